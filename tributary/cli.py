"""The `tributary` console script (`tributary = "tributary.cli:main"`; also `python -m tributary.cli`).

The command itself is tributary.commands; this module only names its entry point.
"""

import sys

from tributary.commands import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
