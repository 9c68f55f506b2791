"""``python -m mixture ...`` (what ``composer -n N -m mixture train RUN.yaml`` launches on every rank)."""

import sys

from mixture.cli import main

sys.exit(main())
