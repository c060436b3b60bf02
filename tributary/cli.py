"""The `tributary` console script (`tributary = "tributary.cli:main"`; also `python -m tributary.cli`).

The command itself is tributary.commands; this module is the process around it. After Ctrl-C the
process must end even if a thread the command started is still running (the interpreter would wait
for it at exit): it gets a few seconds, then the process exits with the same status.
"""

import contextlib
import os
import sys
import threading

from tributary import commands
from tributary.commands.errors import EXIT_INTERRUPTED

EXIT_GRACE_S = 5.0


def main() -> int:
    status = commands.main()
    if status == EXIT_INTERRUPTED:
        end_within_grace(status)
    return status


def end_within_grace(status: int) -> None:
    """If threads that hold the process open are still running, exit with `status` after EXIT_GRACE_S regardless."""
    lingering = [
        thread for thread in threading.enumerate()
        if thread is not threading.main_thread() and not thread.daemon and thread.is_alive()
    ]  # fmt: skip
    if lingering:
        watchdog = threading.Timer(EXIT_GRACE_S, _exit_now, args=(status,))
        watchdog.daemon = True  # runs while the interpreter waits for the lingering threads at exit
        watchdog.start()


def _exit_now(status: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
