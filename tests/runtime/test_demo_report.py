"""The demo report: one summary table first (figures per pipeline, the main one first), then the sections."""

import io

import pytest
from rich.console import Console

from tributary.commands.demo_report import ordered, print_report, summary_table, verdict
from tributary.demos import DemoFigures, DemoSection
from tributary.demos.opt_in import record_number


def report_text(sections, problems=()) -> str:
    console = Console(file=io.StringIO(), width=160, color_system=None)
    print_report(console, ordered(sections), list(problems))
    return console.file.getvalue()


def cells(text: str, title_start: str) -> list[str]:
    row = next(line for line in text.splitlines() if line.startswith(f"│ {title_start}"))
    return [cell.strip() for cell in row.strip("│ ").split("│")]


def sections() -> list[DemoSection]:
    return [
        DemoSection("order lake", ["loaded 326 lines"], accounted=True, figures=DemoFigures(326, 326, 0, 0)),
        DemoSection("opt-in", ["43 DMS records"], accounted=False, problems=["record 27 did not reach on-failure"],
                    figures=DemoFigures(43, 42, 0, 1)),
        DemoSection("lake only", ["skipped: the template lacks WildrydesStream"], accounted=True),
        DemoSection("stream processor", ["wildrydes: 63 records"], accounted=True, main=True,
                    figures=DemoFigures(165, 160, 5, 0)),
    ]


def test_the_summary_table_comes_first_with_the_main_pipeline_in_its_first_row():
    text = report_text(sections())
    table_end = text.index("## ")
    rows = [line for line in text[:table_end].splitlines() if line.startswith("│ ") and "│" in line[2:]]
    assert rows[0].startswith("│ stream processor")
    assert cells(text, "stream processor")[:5] == ["stream processor", "165", "160", "5", "0"]
    assert cells(text, "opt-in")[:5] == ["opt-in", "43", "42", "0", "1"]
    assert cells(text, "lake only")[1:5] == ["-", "-", "-", "-"]
    assert [line for line in text.splitlines() if line.startswith("## ")] == [
        "## stream processor: ok (every record accounted for: applied or on the on-failure destination)",
        "## order lake: ok (every record accounted for: applied or on the on-failure destination)",
        "## opt-in: FAILED", "## lake only: ok"]
    assert "  problem: record 27 did not reach on-failure" in text


def test_verdicts_say_what_they_mean():
    stream_processor, opt_in, skipped = sections()[3], sections()[1], sections()[2]
    assert verdict(stream_processor) == "ok: none lost"  # its heading says what accounted for means
    assert verdict(opt_in) == "FAILED: 1 records lost; see its problems below"
    assert verdict(skipped) == "skipped: the template lacks WildrydesStream"
    redrive = DemoSection("redrive", accounted=True, figures=DemoFigures(13, 4, 9, 0), accounted_as="re-applied")
    assert verdict(redrive) == "ok: none lost"


def test_problems_of_the_whole_run_follow_the_table():
    text = report_text(sections()[:1], ["not drained after 300 s"])
    assert text.index("problem: not drained after 300 s") < text.index("## order lake")
    assert "lost: neither" in " ".join(text.split())  # the legend says what the columns mean


def test_the_table_renders_in_a_narrow_pipe_without_losing_figures():
    console = Console(file=io.StringIO(), width=80, color_system=None)
    console.print(summary_table(sections()))
    assert "165" in console.file.getvalue() and "326" in console.file.getvalue()


def test_opt_in_records_are_numbered_from_one_in_the_order_put():
    assert record_number(26) == 27


def test_an_unwritable_report_path_is_refused_before_the_demo_starts(tmp_path, capsys, monkeypatch):
    from tributary.commands import main as tributary
    from tributary.runtime import app

    monkeypatch.setattr(app.Runtime, "start", lambda self: pytest.fail("the demo started"))
    assert tributary(["demo", "--report", str(tmp_path / "no-such-dir" / "report.html")]) == 2
    assert "cannot write in" in capsys.readouterr().err
    assert tributary(["demo", "--report", str(tmp_path)]) == 2
    assert "is a directory: name a file" in capsys.readouterr().err
