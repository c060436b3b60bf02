"""What `up`, `run` and `query` print: counters, drain feedback, query rows, and the checks before anything starts."""

import argparse
import io
import re
from pathlib import Path

import duckdb
import pytest
from rich.console import Console

from tributary.commands.runtime_commands import checked_records, print_rows
from tributary.commands.session import runtime_overrides
from tributary.commands.session_output import CounterDisplay, counter_lines, counters_table, drain_feedback
from tributary.runtime.lake import Lake
from tributary.runtime.template import Template
from tributary.user_errors import UserError

FIXTURES = Path(__file__).parent / "fixtures"


def counters(records_in: int = 4, delivered: int = 2) -> dict:
    mapping = {"source": "stream/t-input", "records_in": records_in, "invocations": 3, "errors": 1, "retries": 2,
               "iterator_age_ms": 15, "to_on_failure": 1, "last_error": "ValueError: bad", "stuck": []}
    return {"mappings": {"WriterFunction.Input": mapping},
            "emulations": {"firehose:orders-to-lake": {"delivered": delivered}},
            "faults": {"kinesis.throttle": 5}, "alarms": None}


def console(terminal: bool) -> Console:
    return Console(file=io.StringIO(), force_terminal=terminal, width=200, color_system=None)


def test_the_counters_table_has_a_row_per_mapping_with_its_figures():
    out = console(True)
    out.print(counters_table(counters()))
    text = out.file.getvalue()
    row = next(line for line in text.splitlines() if "WriterFunction.Input" in line)
    assert [cell.strip() for cell in row.strip("│┃ ").split("│")] == [
        "WriterFunction.Input", "stream/t-input", "4", "3", "1", "2", "15 ms", "1"]
    assert "firehose:orders-to-lake" in text and "delivered 2" in text
    assert "last function error: ValueError: bad" in text
    assert "faults injected: kinesis.throttle 5" in text


def test_piped_updates_print_only_the_lines_that_changed():
    out = console(False)
    with CounterDisplay(out, terminal=False) as display:
        display.show(counters())
        first = out.file.getvalue()
        display.show(counters())  # nothing changed: nothing printed
        assert out.file.getvalue() == first
        display.show(counters(delivered=3))
    later = out.file.getvalue()[len(first):].splitlines()
    assert len(first.splitlines()) == len(counter_lines(counters()))
    assert len(later) == 1 and "firehose:orders-to-lake" in later[0] and "delivered=3" in later[0]


def test_a_terminal_redraws_the_counters_in_place():
    out = console(True)
    with CounterDisplay(out, terminal=True) as display:
        display.show(counters())
        display.show(counters(records_in=9))
    text = out.file.getvalue()
    # Each redraw moves the cursor up over the previous frame: the last frame is what the screen shows.
    frames = re.split(r"\x1b\[\d*A", text)
    assert len(frames) > 1, "the table was appended, not redrawn in place"
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", frames[-1])
    assert screen.count("event source mappings") == 1  # one table on the screen
    row = next(line for line in screen.splitlines() if line.startswith("│ WriterFunction.Input"))
    assert [cell.strip() for cell in row.strip("│┃ ").split("│")][2] == "9"  # records in, as last shown


def test_drain_feedback_prints_lines_when_piped_and_bars_on_a_terminal():
    piped = console(False)
    with drain_feedback(piped, terminal=False) as notify:
        notify("waiting for window 2026-11-21T12:00:00Z..2026-11-21T12:00:10Z of agg on shardId-0 to end at 12:00:10")
    assert piped.file.getvalue().splitlines() == [
        "draining: until every mapping and emulation has processed what it was given",
        "waiting for window 2026-11-21T12:00:00Z..2026-11-21T12:00:10Z of agg on shardId-0 to end at 12:00:10",
    ]
    terminal = console(True)
    with drain_feedback(terminal, terminal=True) as notify:
        notify("waiting for window 2026-11-21T12:00:00Z..2026-11-21T12:00:10Z of agg on shardId-0 to end at 12:00:10")
        notify("something else the drain says")
    assert "something else the drain says" in terminal.file.getvalue()
    assert "draining: done" in terminal.file.getvalue()


def test_query_rows_are_tab_separated_when_piped_and_a_table_on_a_terminal(capsys, monkeypatch):
    print_rows(["day", "total"], [("2026-11-20", 6.5), ("2026-11-21", None)], terminal=False)
    assert capsys.readouterr().out == "day\ttotal\n2026-11-20\t6.5\n2026-11-21\t\n(2 rows)\n"
    recorded = console(True)
    monkeypatch.setattr("tributary.commands.runtime_commands.stdout_console", lambda: recorded)
    print_rows(["day", "total"], [("2026-11-20", 6.5)], terminal=True)
    row = next(line for line in recorded.file.getvalue().splitlines() if "2026-11-20" in line)
    assert [cell.strip() for cell in row.strip("│ ").split("│")] == ["2026-11-20", "6.5"]


def test_values_that_look_like_markup_print_as_themselves(capsys):
    print_rows(["product"], [("[/]",), ("Widget [red]",)], terminal=True)
    out = capsys.readouterr().out
    assert "[/]" in out and "Widget [red]" in out


def test_bad_sql_and_unknown_tables_are_user_errors_naming_the_tables():
    lake = Lake(duckdb.connect(), tables=["orders_lake.order_changes"])
    with pytest.raises(UserError, match=r"Parser Error.*tables: orders_lake\.order_changes.*--list"):
        lake.query("SELEC 1")
    with pytest.raises(UserError, match=r"Catalog Error: Table with name nope.*tables: orders_lake\.order_changes"):
        lake.query("SELECT * FROM nope")


def test_records_arguments_are_checked_before_anything_starts(tmp_path):
    template = Template.load(FIXTURES / "pipeline.yaml")
    records = str(FIXTURES / "input.jsonl")
    assert checked_records(template, [f"InputStream={records}", f"t-input={records}"]) == [
        ("InputStream", Path(records)), ("t-input", Path(records))]
    with pytest.raises(UserError, match=r"no stream 'Nowhere'; its streams: InputStream \(t-input\)"):
        checked_records(template, [f"Nowhere={records}"])
    with pytest.raises(UserError, match=r"no file .*missing\.jsonl; give a JSON-lines file"):
        checked_records(template, [f"InputStream={tmp_path / 'missing.jsonl'}"])
    with pytest.raises(UserError, match="is not STREAM=FILE"):
        checked_records(template, ["InputStream"])


def arguments(template: Path, overrides: list[str], config_env: str | None, config_file: Path) -> argparse.Namespace:
    return argparse.Namespace(template=template, parameter_overrides=overrides, config_env=config_env,
                              config_file=config_file)


def test_overrides_come_from_defaults_then_the_config_env_then_the_command_line(tmp_path):
    template = tmp_path / "template.yaml"
    template.write_text("Parameters:\n  Window: {Type: Number, Default: 60}\n  Prefix: {Type: String, Default: ''}\n"
                        "  Stage: {Type: String, Default: dev}\nResources: {}\n")
    config = tmp_path / "samconfig.toml"
    config.write_text('[qa.deploy.parameters]\nparameter_overrides = "Prefix=qa- Stage=qa"\n')
    defaults = {"Window": "10", "NotDeclared": "1"}
    assert runtime_overrides(arguments(template, [], None, config), defaults) == {"Window": "10"}
    assert runtime_overrides(arguments(template, ["Stage=prod"], "qa", config), defaults) == {
        "Window": "10", "Prefix": "qa-", "Stage": "prod"}
    assert runtime_overrides(arguments(template, ["Window=30"], None, config), defaults) == {"Window": "30"}
    with pytest.raises(UserError, match=r"cannot read template .*nope\.yaml.*pass --template PATH"):
        runtime_overrides(arguments(tmp_path / "nope.yaml", [], None, config), defaults)
