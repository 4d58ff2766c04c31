"""``python -m bot`` is the ``timmy`` command."""

import sys

from bot.cli import main

sys.exit(main())
