"""`python -m diversens`: the same CLI as the `diversens` command."""

import sys

from diversens.cli import main

sys.exit(main())
