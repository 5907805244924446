"""`python -m node_transfer.gpucheck ...` runs the check's driver."""

import sys

from .driver import main

sys.exit(main())
