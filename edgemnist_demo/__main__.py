"""`python -m edgemnist_demo`."""

import sys

from edgemnist_demo.cli import main

sys.exit(main())
