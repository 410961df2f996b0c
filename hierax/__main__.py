"""``python -m hierax``: the ``hierax`` command."""

from __future__ import annotations

import sys

from hierax.interface.cli import main

if __name__ == "__main__":
    sys.exit(main())
