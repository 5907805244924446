"""`python -m node_transfer ...` is `node-transfer ...`."""

import sys

from .cli import main

sys.exit(main())
