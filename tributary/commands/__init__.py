"""The `tributary` command: one entry point that hands each subcommand to the module that owns it.

Commands sit above everything they drive; nothing below imports them:

    runtime_commands.py  `up`, `demo`, `run`, `query`: the local runtime's commands
    redrive.py           `redrive`: the redrive state machine of a running `up`, and its summary
    session.py           starting a runtime for a command, live counters, shutdown
    session_output.py    live counters (rich.live on a terminal), drain progress, the stdout console
    demo.py              the demo runner: every demo plug-in (tributary.demos) on one runtime
    demo_report.py       the demo report: summary table, then one section per pipeline
    invoke.py            `invoke`: one function on one event, in-process (invoke_inputs.py: its inputs)
    logs.py              `logs`: the function log of a run, readably (--tail follows)
    samconfig.py         `--config-env`: parameter overrides from samconfig.toml
    errors.py            what an exception ending a command prints, and the exit status
    (tributary.producer, tributary.consumer)  `produce`, `consume`

A subcommand's module is imported only when it runs, so `produce` never loads the runtime. Every
command ends here: a mistake the user can fix is one line and exit 2, Ctrl-C is `interrupted` and
exit 130, a closed stdout (`| head`) ends quietly, and a traceback shows only with `--debug` (or
TRIBUTARY_DEBUG=1).
"""

import importlib
import importlib.metadata
import os
import sys
import traceback

from tributary.commands.errors import EXIT_FAILED, EXIT_INTERRUPTED, debug_requested, describe

_RUNTIME_COMMANDS = "tributary.commands.runtime_commands"
SUBCOMMANDS = {
    "up": (_RUNTIME_COMMANDS, "Start the emulator and the template's pipelines until interrupted"),
    "demo": (_RUNTIME_COMMANDS, "Scripted run of the main job with a report; exit 0 if nothing is lost"),
    "run": (_RUNTIME_COMMANDS, "Run any SAM template's Kinesis-triggered functions until drained"),
    "query": (_RUNTIME_COMMANDS, "Run SQL over the emulated data lake with DuckDB"),
    "redrive": ("tributary.commands.redrive", "Redrive dead-lettered records of a running `up` (Step Functions)"),
    "invoke": ("tributary.commands.invoke", "Invoke one function of the template on an event file (no Docker)"),
    "logs": ("tributary.commands.logs", "Show the functions' logs of a local run, readably (--tail follows)"),
    "produce": ("tributary.producer", "Put unicorns, payments or DMS changes on a stream, or orders in S3"),
    "consume": ("tributary.consumer", "Tail a stream and print one decoded JSON object per line"),
}
GLOBAL_OPTIONS = (
    "options (before the command):",
    "  --debug        show the traceback of an error (or set TRIBUTARY_DEBUG=1)",
    "  -V, --version  print the version",
)


def usage() -> str:
    lines = ["usage: tributary [--debug] <command> [options]", "", "commands:"]
    lines += [f"  {name:<8} {help_text}" for name, (_, help_text) in SUBCOMMANDS.items()]
    lines += ["", *GLOBAL_OPTIONS, "", "`tributary <command> --help` shows a command's options."]
    return "\n".join(lines)


def version() -> str:
    try:
        return importlib.metadata.version("tributary")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested()
    while args and args[0] == "--debug":
        debug, args = True, args[1:]
    if args and args[0] in {"-V", "--version"}:
        print(f"tributary {version()}")
        return 0
    if not args or args[0] in {"-h", "--help"}:
        print(usage())
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command not in SUBCOMMANDS:
        print(f"tributary: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    try:
        status = int(importlib.import_module(SUBCOMMANDS[command][0]).main(command, rest) or 0)
        sys.stdout.flush()  # a reader gone (`| head`) shows here, not in the interpreter's final flush
        return status
    except (KeyboardInterrupt, Exception) as error:
        return ended_by(error, command, debug)


def ended_by(error: BaseException, command: str, debug: bool) -> int:
    """Report what ended the command, on one line (after its traceback with --debug); the exit status."""
    if isinstance(error, BrokenPipeError):
        stdout_to_devnull()
        return EXIT_FAILED
    if debug:
        traceback.print_exception(error)
    if isinstance(error, KeyboardInterrupt):
        print("interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    line, status = describe(error, command)
    print(f"tributary {command}: {line}", file=sys.stderr, flush=True)
    return status


def stdout_to_devnull() -> None:
    """Python's recipe for a closed pipe (docs: signal, "Note on SIGPIPE"): the final flush then writes nowhere."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout (a captured one, in tests): nothing will flush to the pipe
        pass
