"""Per-layer time of the CNN's 3x3 convolutions, forward + backward, in JAX (XLA's convolution,
im2col, what ``conv_impl="mixed"`` picks) and PyTorch eager (channels_last), side by side.

    flock /tmp/cpu.lock python scripts/cnn_cpu_layers.py [--batch 32] [--rounds 5]

Rounds alternate the candidates in random order (each after a pause and one untimed call, so the
other framework's spinning threads settle); the table holds medians. Run it on an idle machine.
"""

import argparse
import random
import time

import jax
import numpy as np
import torch

from jax_models.cnn import XLA_CONV_MAX_PIXELS, XLA_CONV_MIN_SIDE, conv3x3_im2col

LAYERS = [(32, 3, 64), (16, 64, 128), (8, 128, 256), (8, 256, 256), (4, 256, 512), (4, 512, 512), (2, 512, 512)]


def xla_conv(x, k):
    return jax.lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))


def jax_candidate(conv, x, k, g):
    fn = jax.jit(jax.grad(lambda x, k: (conv(x, k) * g).sum(), (0, 1)))
    return lambda: jax.block_until_ready(fn(x, k))


def torch_candidate(x, k, g):
    conv = torch.nn.Conv2d(k.shape[2], k.shape[3], 3, padding=1, bias=False).to(memory_format=torch.channels_last)
    xt = torch.tensor(x).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    gt = torch.tensor(g).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)

    def step():
        xt.grad = conv.weight.grad = None
        conv(xt).backward(gt)
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"batch {args.batch}, ms per forward + backward (median of {args.rounds})")
    print("| layer | XLA conv | im2col | mixed picks | PyTorch channels_last |\n|---|---|---|---|---|")
    for hw, c, o in LAYERS:
        x, g = (rng.normal(size=(args.batch, hw, hw, n)).astype(np.float32) for n in (c, o))
        k = (rng.normal(size=(3, 3, c, o)) / np.sqrt(9 * c)).astype(np.float32)
        cands = {"xla": jax_candidate(xla_conv, x, k, g), "im2col": jax_candidate(conv3x3_im2col, x, k, g),
                 "torch": torch_candidate(x, k, g)}
        times = {name: [] for name in cands}
        for f in cands.values():
            f()
        for _ in range(args.rounds):
            for name, f in random.sample(list(cands.items()), len(cands)):
                time.sleep(0.2)
                f()
                t = time.perf_counter()
                f()
                times[name].append(time.perf_counter() - t)
        ms = {name: 1e3 * float(np.median(v)) for name, v in times.items()}
        pick = "xla" if hw >= XLA_CONV_MIN_SIDE and args.batch * hw * hw <= XLA_CONV_MAX_PIXELS else "im2col"
        print(f"| {hw}x{hw}, {c}->{o} | {ms['xla']:.1f} | {ms['im2col']:.1f} | {pick} | {ms['torch']:.1f} |",
              flush=True)


if __name__ == "__main__":
    main()
