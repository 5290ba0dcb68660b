"""`python -m lipdub` runs the command line."""

import sys

from lipdub.cli import main

sys.exit(main())
