"""``python -m supcon`` runs the command line."""

import sys

from supcon.cli import main

sys.exit(main())
