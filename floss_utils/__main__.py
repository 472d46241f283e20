"""``python -m floss_utils``: the ``floss`` command (see :mod:`floss_utils.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
