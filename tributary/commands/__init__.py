"""The `tributary` command: one entry point that hands each subcommand to the module that owns it.

Commands sit above everything they drive; nothing below imports them:

    runtime_commands.py  `up`, `demo`, `run`, `query`: the local runtime's commands
    redrive.py           `redrive`: the redrive state machine of a running `up`, and its summary
    session.py           starting a runtime for a command, live counters, shutdown
    demo.py              the demo runner: every demo plug-in (tributary.demos) on one runtime
    (tributary.producer, tributary.consumer)  `produce`, `consume`

A subcommand's module is imported only when it runs, so `produce` never loads the runtime.
"""

import importlib
import sys

_RUNTIME_COMMANDS = "tributary.commands.runtime_commands"
SUBCOMMANDS = {
    "up": (_RUNTIME_COMMANDS, "Start the emulator and the template's pipelines until interrupted"),
    "demo": (_RUNTIME_COMMANDS, "Scripted run of the main job with a report; exit 0 if nothing is lost"),
    "run": (_RUNTIME_COMMANDS, "Run any SAM template's Kinesis-triggered functions until drained"),
    "query": (_RUNTIME_COMMANDS, "Run SQL over the emulated data lake with DuckDB"),
    "redrive": ("tributary.commands.redrive", "Redrive dead-lettered records of a running `up` (Step Functions)"),
    "invoke": ("tributary.commands.invoke", "Invoke one function of the template on an event file (no Docker)"),
    "logs": ("tributary.commands.logs", "Show the functions' logs of a local run, readably (--tail follows)"),
    "produce": ("tributary.producer", "Put unicorn, payment or DMS records on a stream"),
    "consume": ("tributary.consumer", "Tail a stream and print one decoded JSON object per line"),
}


def usage() -> str:
    lines = ["usage: tributary <command> [options]", "", "commands:"]
    lines += [f"  {name:<8} {help_text}" for name, (_, help_text) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help"}:
        print(usage())
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command not in SUBCOMMANDS:
        print(f"tributary: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[command][0])
    return int(module.main(command, rest) or 0)
