"""``python -m harmonium``: the command line (see ``harmonium.cli``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
