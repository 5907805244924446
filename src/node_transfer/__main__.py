"""`python -m node_transfer ...` is `node-transfer ...`."""

import sys

from .app.cli import main

sys.exit(main())
