"""``python -m scfim``: the same command line as ``scfim``."""

import sys

from .cli import main

sys.exit(main())
