"""`UserError`: a mistake the user can fix (a missing file, an unknown stream, a busy port, bad input).

The `tributary` command prints its message on one line and exits 2, with no traceback (unless
`--debug`); so its message says what is wrong and what to do. Anything else escaping a command is
a bug, reported with its traceback.
"""


class UserError(Exception):
    """An error the user can fix; the message names the problem and, where it helps, the fix."""
