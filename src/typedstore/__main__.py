"""``python -m typedstore`` and the ``typedstore`` console script."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ._cli import run


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``typedstore`` command line; return its exit status (see ``--help``)."""
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
