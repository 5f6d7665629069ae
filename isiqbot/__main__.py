"""`python -m isiqbot` works as the `isiqbot` command does."""

import sys

from bot.cli import main

sys.exit(main())
