"""``python -m components.fanout``: see :mod:`components.fanout.cli`."""

import sys

from components.fanout.cli import main

if __name__ == "__main__":
    sys.exit(main())
