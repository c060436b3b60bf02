"""The report `tributary demo` prints: one summary table, then one section per pipeline (the main one first).

Rendered on any rich Console (stdout, or a recording one for a file), so what a terminal shows and
what a pipe or a file gets say the same; only the styling differs.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from tributary.demos import DemoSection

LEGEND = (
    "records in: the records each pipeline's check covers (user records on its streams, CSV lines, DMS records; "
    "for the redrive, the dead-lettered records); applied: in its read model; on-failure: in a batch delivered "
    "to the on-failure destination (for the redrive, quarantined with its reason); lost: neither. "
    "The demo passes only if no pipeline lost a record."
)


def ordered(sections: Sequence[DemoSection]) -> list[DemoSection]:
    """The main pipeline's section first, the others in the order they ran."""
    return sorted(sections, key=lambda section: not section.main)


def verdict(section: DemoSection) -> str:
    skipped = next((line for line in section.lines if line.startswith("skipped:")), None)
    if section.figures is None and skipped:
        return skipped
    if section.accounted:
        return "ok: none lost"  # what "accounted" means is the section's heading, below the table
    if section.figures is not None and section.figures.lost:
        return f"FAILED: {section.figures.lost} records lost; see its problems below"
    return "FAILED: see its problems below"


def summary_table(sections: Sequence[DemoSection]) -> Table:
    table = Table(title="tributary demo: where every record went", title_justify="left")
    table.add_column("pipeline", max_width=36)
    for column in ("records in", "applied", "on-failure", "lost"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("verdict")
    for section in sections:
        figures = section.figures
        cells = ([str(figures.records_in), str(figures.applied), str(figures.on_failure), str(figures.lost)]
                 if figures is not None else ["-"] * 4)  # fmt: skip
        style = None if section.accounted else "bold red"
        table.add_row(section.title, *cells, verdict(section), style=style)
    return table


def print_report(console: Console, sections: Sequence[DemoSection], general_problems: Sequence[str]) -> None:
    """The summary table, the problems of the whole run, then each section's lines and problems."""
    console.print()
    console.print(summary_table(sections))
    console.print(LEGEND, style="dim", markup=False)
    for problem in general_problems:
        console.print(f"problem: {problem}", style="bold red", markup=False)
    for section in sections:
        console.print()
        outcome = f"ok ({section.accounted_as})" if section.accounted and section.figures else (
            "ok" if section.accounted else "FAILED")
        console.print(f"## {section.title}: {outcome}", style="bold", markup=False)
        for line in section.lines:
            console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
        for problem in section.problems:
            console.print(f"  problem: {problem}", style="bold red", markup=False, soft_wrap=True)
