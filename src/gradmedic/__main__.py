"""``python -m gradmedic``: the same command line as the ``gradmedic`` script."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
