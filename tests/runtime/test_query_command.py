"""`tributary query --wait`: asked again on a fresh read of the lake until it has rows, or time is up."""

import pytest

from tributary.commands import runtime_commands
from tributary.commands.runtime_commands import main
from tributary.runtime.lake import LakeTableMissing
from tributary.user_errors import UserError


class LakeReadAt:
    """A lake as read at one moment: no table yet, an empty one, or rows."""

    def __init__(self, state: str) -> None:
        self.state = state
        self.named_queries = {"current": "SELECT * FROM order_changes"}

    def query(self, sql: str):
        assert sql == "SELECT * FROM order_changes"
        if self.state == "missing":
            raise LakeTableMissing("query failed: Catalog Error: Table with name order_changes does not exist!")
        if self.state == "typo":
            raise UserError("query failed: Parser Error: syntax error at or near \"SELEC\"")
        return ["order_id"], ([("3801",)] if self.state == "rows" else [])


@pytest.fixture
def no_sleep(monkeypatch):
    monkeypatch.setattr(runtime_commands.time, "sleep", lambda seconds: None)


def test_it_reads_the_lake_again_until_the_table_exists_and_has_rows(no_sleep):
    reads = iter([LakeReadAt("empty"), LakeReadAt("rows")])
    columns, rows = runtime_commands._rows_within(60, lambda: next(reads), "current", LakeReadAt("missing"))
    assert (columns, rows) == (["order_id"], [("3801",)])


def test_without_wait_a_missing_table_is_the_users_error_at_once(no_sleep):
    with pytest.raises(UserError, match="order_changes does not exist"):
        runtime_commands._rows_within(0, pytest.fail, "current", LakeReadAt("missing"))


def test_a_typo_is_reported_at_once_even_with_wait(no_sleep):
    with pytest.raises(UserError, match="Parser Error"):
        runtime_commands._rows_within(60, pytest.fail, "current", LakeReadAt("typo"))


def test_an_empty_result_after_the_wait_is_printed_as_empty(no_sleep, monkeypatch):
    clock = iter(range(0, 1000, 10))
    monkeypatch.setattr(runtime_commands.time, "monotonic", lambda: next(clock))
    columns, rows = runtime_commands._rows_within(25, lambda: LakeReadAt("empty"), "current", LakeReadAt("empty"))
    assert (columns, rows) == (["order_id"], [])


def test_no_endpoint_names_what_to_pass(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with pytest.raises(UserError, match="pass --port"):
        main("query", ["--list"])
