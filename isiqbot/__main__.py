"""`python -m isiqbot` works as the `isiqbot` command does."""

import sys

from isiqbot.bot.cli import main

sys.exit(main())
