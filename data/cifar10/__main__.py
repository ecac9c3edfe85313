"""``python -m data.cifar10``: see :mod:`data.cifar10.cli`."""

import sys

from data.cifar10.cli import main

sys.exit(main())
