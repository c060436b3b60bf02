"""The redrive execution's summary, added up page by page: figures of settled messages only, every message counted."""

from hypothesis import given
from hypothesis import strategies as st

from tributary_shared.redrive.settings import RunOptions
from tributary_shared.redrive.summary import LIST_LIMIT, RECORD_FIGURES, empty_summary, tally

OPTIONS = RunOptions().as_input()


def start(**options) -> dict:
    merged = {**OPTIONS, **options}
    return {"options": merged, "failedRecordsBucket": None, "summary": empty_summary(merged), "release": [],
            "more": True, "cursor": ""}  # fmt: skip


def settled(pipeline: str = "payment-processor", **counts: int) -> dict:
    figures = {figure: counts.get(figure, 0) for figure in RECORD_FIGURES}
    return {"message": "m", "pipeline": pipeline, "disposition": "settled", "counts": figures, "lost": [],
            "quarantine": None}  # fmt: skip


def test_settled_messages_add_up_and_unsettled_ones_are_released():
    results = [
        {"outcome": settled(reApplied=2, superseded=1), "receiptHandle": "h1"},
        {"outcome": {**settled("unicorn-processor", quarantined=1, lostToRetention=2),
                     "lost": [{"shardId": "s", "from": "1", "to": "2", "records": 2}],
                     "quarantine": "s3://b/quarantine/x.jsonl"}, "receiptHandle": "h2"},
        {"outcome": {"message": "m3", "pipeline": None, "disposition": "kept", "reason": "not JSON"},
         "receiptHandle": "h3"},
        {"outcome": {"message": "m4", "pipeline": "optin-updater", "disposition": "not-selected"},
         "receiptHandle": "h4"},
    ]  # fmt: skip
    state = tally(start(), results, "sqs")
    summary = state["summary"]
    assert {figure: summary[figure] for figure in RECORD_FIGURES} == {
        "reApplied": 2, "superseded": 1, "appliedUnreported": 0, "quarantined": 1, "lostToRetention": 2}  # fmt: skip
    assert summary["messages"] == {"settled": 2, "kept": 1, "notSelected": 1, "planned": 0}
    assert summary["byPipeline"]["payment-processor"]["reApplied"] == 2
    assert summary["kept"] == [{"message": "m3", "pipeline": None, "reason": "not JSON"}]
    assert summary["lost"][0]["records"] == 2 and summary["quarantineObjects"] == ["s3://b/quarantine/x.jsonl"]
    assert state["release"] == ["h3", "h4"] and state["more"] is True


def test_a_message_settled_but_not_deleted_counts_its_records_and_is_kept_with_why():
    result = {"outcome": settled(reApplied=3), "settleError": {"Error": "Sqs.ReceiptHandleIsInvalid", "Cause": "gone"},
              "receiptHandle": "h1"}  # fmt: skip
    summary = tally(start(), [result], "sqs")["summary"]
    assert summary["reApplied"] == 3 and summary["messages"]["kept"] == 1
    assert "deleting the message failed" in summary["kept"][0]["reason"]


def test_the_queue_is_read_until_empty_or_too_many_are_kept():
    assert tally(start(), [], "sqs")["more"] is False
    kept = {"outcome": {"message": "m", "disposition": "kept", "reason": "r"}, "receiptHandle": "h"}
    state = tally(start(maxKept=2), [kept, kept], "sqs")
    assert state["more"] is False and "start another execution" in state["summary"]["notes"][0]
    state = tally(start(maxMessages=3), [{"outcome": settled(), "receiptHandle": "h"}] * 3, "sqs")
    assert state["more"] is False


def test_the_bucket_is_listed_page_after_page_from_the_last_key():
    results = [{"outcome": settled(), "key": "aws/lambda/a"}, {"outcome": settled(), "key": "aws/lambda/b"}]
    state = tally(start(), results, "s3", truncated=True)
    assert (state["more"], state["cursor"], state["release"]) == (True, "aws/lambda/b", [])
    assert tally(state, results, "s3", truncated=False)["more"] is False


def test_a_dry_runs_plans_are_listed():
    plan = {"message": "m", "pipeline": "payment-processor", "disposition": "planned",
            "plan": {"describe": "payments shardId-0 1..2 (2 records)", "wouldReApply": 2, "lostToRetention": 0}}
    summary = tally(start(dryRun=True), [{"outcome": plan, "receiptHandle": "h"}], "sqs")["summary"]
    assert summary["dryRun"] and summary["wouldReApply"] == 2 and summary["messages"]["planned"] == 1
    assert summary["reApplied"] == 0 and summary["planned"][0]["describe"].startswith("payments")


def test_lists_stop_at_their_limit_and_say_how_many_more():
    kept = {"outcome": {"message": "m", "disposition": "kept", "reason": "r"}}
    summary = tally(start(maxKept=100), [kept] * (LIST_LIMIT + 5), "s3")["summary"]
    assert len(summary["kept"]) == LIST_LIMIT and summary["omitted"] == {"kept": 5}


OUTCOMES = st.one_of(
    st.builds(lambda c: {"outcome": settled(**c)}, st.fixed_dictionaries(
        {figure: st.integers(0, 50) for figure in RECORD_FIGURES})),
    st.just({"outcome": {"message": "m", "disposition": "kept", "reason": "r"}}),
    st.just({"outcome": {"message": "m", "pipeline": "p", "disposition": "not-selected"}}),
)  # fmt: skip


@given(st.lists(st.lists(OUTCOMES, max_size=10), max_size=5))
def test_any_pages_add_up_to_the_sum_of_their_settled_messages(pages):
    state = start(maxMessages=2000, maxKept=100)
    for page in pages:
        state = tally(state, page, "s3", truncated=True)
    results = [result for page in pages for result in page]
    summary = state["summary"]
    assert sum(summary["messages"].values()) == len(results)
    for figure in RECORD_FIGURES:
        expected = sum(r["outcome"]["counts"][figure] for r in results if r["outcome"]["disposition"] == "settled")
        assert summary[figure] == expected == sum(p[figure] for p in summary["byPipeline"].values())
