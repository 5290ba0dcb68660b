"""`python -m lipdub.cli`."""

import sys

from lipdub.cli import main

sys.exit(main())
