"""One backend per framework (JAX, NumPy, PyTorch) behind the interface in ``base``."""
