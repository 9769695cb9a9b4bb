"""`python -m esc_cli` runs the `esc` command line."""

import sys

from esc_cli.cli import main

sys.exit(main())
