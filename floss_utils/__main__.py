"""``python -m floss_utils``: the ``floss`` command (see :mod:`floss_utils.book.cli`)."""

import sys

from .book.cli import main

if __name__ == "__main__":
    sys.exit(main())
