"""The `tributary` command: one entry point that hands each subcommand to the module that owns it."""

import importlib
import sys

SUBCOMMANDS = {
    "up": ("tributary.runtime.cli", "Start the emulator and the template's pipelines until interrupted"),
    "demo": ("tributary.runtime.cli", "Scripted run of the main job with a report; exit 0 if nothing is lost"),
    "run": ("tributary.runtime.cli", "Run any SAM template's Kinesis-triggered functions until drained"),
    "query": ("tributary.runtime.cli", "Run SQL over the emulated data lake with DuckDB"),
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


if __name__ == "__main__":
    sys.exit(main())
