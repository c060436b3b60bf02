"""The opt-in updater: exact End User Messaging SMS calls (botocore Stubber, checked against the
service model), every service rule, per-user order, partial batch responses, the sample events
through the handler against the SMS emulation, and per-number order through the version table
(moto), including a property over arbitrary delivery orders."""

import json
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from typing import Any

import boto3
import pytest
from botocore.exceptions import ReadTimeoutError
from botocore.stub import Stubber
from hypothesis import given, settings
from hypothesis import strategies as st
from support import OPT_OUT_LIST as LIST
from support import (
    REPO_ROOT,
    RESOURCES,
    VERSION_TABLE,
    FakeClock,
    FakeLambdaContext,
    create_version_table,
    kinesis_event,
    load_event,
    load_handler_module,
)
from support import declared_mapping as declared_kinesis_event

from tributary.commands.demo import RuntimeDemoContext
from tributary.demos.opt_in import OptInDemo
from tributary.dms_changes import plan_changes
from tributary.runtime.app import Runtime, RuntimeOptions
from tributary.runtime.emulations.sms import SmsEmulation
from tributary.runtime.esm import EventSourceMapping, MappingConfig, drain
from tributary.runtime.invocation import InvocationResult
from tributary_shared.aws_clients import NO_RETRY_CONFIG as CLIENT_CONFIG
from tributary_shared.dynamo_writer import WRITE_RETRY
from tributary_shared.errors import ConfigurationError, PoisonRecordError, TransientError
from tributary_shared.kinesis_batch import record_version
from tributary_shared.optin_updater.dms_records import DmsSource, OptInChange
from tributary_shared.optin_updater.opt_out_list import OPT_OUT_RETRY, Applied, OptOutList, OptOutRefused, Outcome
from tributary_shared.optin_updater.settings import OptInUpdaterSettings
from tributary_shared.optin_updater.updater import OptInUpdater
from tributary_shared.optin_updater.versions import Intent, IntentReport, NumberVersions, VersionRead
from tributary_shared.retries import CALL_BUDGET_S

LIST_ARN = f"arn:aws:sms-voice:us-east-1:123456789012:opt-out-list/{LIST}"
FAR_FUTURE = 1e12
SOURCE = DmsSource(table="optin_status")
SETTINGS = OptInUpdaterSettings(LIST, SOURCE, VERSION_TABLE)
# Sequence numbers with gaps between them, as on a real shard.
optin_event = partial(
    kinesis_event, sequence_step=7, stream_arn="arn:aws:kinesis:us-east-1:123456789012:stream/optin-cdc"
)


# ---------------------------------------------------------------- helpers
class StubbedList:
    """An OptOutList whose client is stubbed: every call must be one we expect, in order."""

    def __init__(self, max_attempts: int = 3) -> None:
        self.client = boto3.client("pinpoint-sms-voice-v2", region_name="us-east-1")
        self.stubber = Stubber(self.client)
        self.sleeps: list[float] = []
        retry = replace(OPT_OUT_RETRY, max_attempts=max_attempts, sleep=self.sleeps.append)
        self.opt_out_list = OptOutList(LIST, self.client, retry=retry)

    def retrying(self, **changes: Any) -> None:
        """The list's retry policy with `changes`: a fake clock, other delays."""
        self.opt_out_list.retry = replace(self.opt_out_list.retry, **changes)

    def expect_put(self, number: str) -> None:
        self.stubber.add_response(
            "put_opted_out_number",
            {"OptOutListArn": LIST_ARN, "OptOutListName": LIST, "OptedOutNumber": number, "EndUserOptedOut": False},
            {"OptOutListName": LIST, "OptedOutNumber": number},
        )

    def expect_listed(self, number: str, *, end_user: bool = False) -> None:
        entry = {"OptedOutNumber": number, "OptedOutTimestamp": 1795262400, "EndUserOptedOut": end_user}
        self._expect_describe(number, [entry])

    def expect_not_listed(self, number: str) -> None:
        self._expect_describe(number, [])

    def _expect_describe(self, number: str, entries: list[dict]) -> None:
        self.stubber.add_response(
            "describe_opted_out_numbers",
            {"OptOutListArn": LIST_ARN, "OptOutListName": LIST, "OptedOutNumbers": entries},
            {"OptOutListName": LIST, "OptedOutNumbers": [number]},
        )

    def expect_opt_in(self, number: str) -> None:
        """The opt-in of a number on the list (not by the end user): look it up, then delete it."""
        self.expect_listed(number)
        self.expect_delete(number)

    def expect_delete(self, number: str) -> None:
        self.stubber.add_response(
            "delete_opted_out_number",
            {"OptOutListArn": LIST_ARN, "OptOutListName": LIST, "OptedOutNumber": number, "EndUserOptedOut": False},
            {"OptOutListName": LIST, "OptedOutNumber": number},
        )

    def expect_error(self, operation: str, number: str, code: str, status: int, **fields) -> None:
        params = {"OptOutListName": LIST}
        params.update(
            {"OptedOutNumbers": [number]} if operation == "describe_opted_out_numbers" else {"OptedOutNumber": number}
        )
        self.stubber.add_client_error(
            operation,
            service_error_code=code,
            service_message=f"{code} (stubbed)",
            http_status_code=status,
            modeled_fields={"Message": f"{code} (stubbed)", **fields} if fields else None,
            expected_params=params,
        )

    def __enter__(self) -> "StubbedList":
        self.stubber.activate()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stubber.deactivate()


def row(user: str, phone: str | None, optin: int, operation: str = "update", **extra) -> tuple[str, bytes]:
    metadata = {"record-type": "data", "operation": operation, "schema-name": "blog_db", "table-name": "optin_status"}
    document = {"data": {"userid": user, "phone": phone, "optin": optin}, "metadata": metadata, **extra}
    return user, json.dumps(document).encode()


def sequences(event: dict) -> list[str]:
    return [record["kinesis"]["sequenceNumber"] for record in event["Records"]]


class RecordingMetrics:
    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def add_metric(self, name: str, unit: str, value: float) -> None:
        self.values[name] = self.values.get(name, 0) + value


class InMemoryVersions:
    """The version table's rules in memory (consistent reads; an intent is refused only over a newer
    version), so the tests of SMS calls need no DynamoDB. `test_optin_order_e2e` runs the real table."""

    def __init__(self) -> None:
        self.stored: dict[str, str] = {}

    def read(self, phones, deadline: float) -> VersionRead:
        return VersionRead({phone: self.stored[phone] for phone in phones if phone in self.stored}, requests=1)

    def start(self, intents: list[Intent], deadline: float) -> IntentReport:
        report = IntentReport(requests=1)
        for intent in intents:
            if self.stored.get(intent.phone, "") > intent.version:
                report.superseded.add(intent.phone)
            else:
                self.stored[intent.phone] = intent.version
                report.started.add(intent.phone)
        return report


def updater_with(
    stubbed: StubbedList, metrics: RecordingMetrics | None = None, versions: InMemoryVersions | None = None
) -> OptInUpdater:
    return OptInUpdater(
        SETTINGS,
        opt_out_list=stubbed.opt_out_list,
        versions=versions or InMemoryVersions(),
        metrics=metrics,
    )


# ---------------------------------------------------------------- OptOutList: one call per rule
def test_opt_out_puts_the_number_on_the_list() -> None:
    with StubbedList() as stubbed:
        stubbed.expect_put("+12065550101")
        assert stubbed.opt_out_list.opt_out("+12065550101", FAR_FUTURE) == Applied("+12065550101", Outcome.OPTED_OUT)
        stubbed.stubber.assert_no_pending_responses()


def test_opt_in_looks_the_number_up_then_deletes_it_from_the_list() -> None:
    with StubbedList() as stubbed:
        stubbed.expect_opt_in("+12065550101")
        assert stubbed.opt_out_list.opt_in("+12065550101", FAR_FUTURE).outcome is Outcome.OPTED_IN
        stubbed.stubber.assert_no_pending_responses()


def test_opting_in_a_number_that_is_not_on_the_list_is_success_without_a_deletion() -> None:
    with StubbedList() as stubbed:  # no deletion queued: one would fail the test
        stubbed.expect_not_listed("+12065550101")
        assert stubbed.opt_out_list.opt_in("+12065550101", FAR_FUTURE).outcome is Outcome.NOT_ON_LIST
        stubbed.stubber.assert_no_pending_responses()


@pytest.mark.parametrize("operation", ["describe_opted_out_numbers", "delete_opted_out_number"])
def test_resource_not_found_of_type_opted_out_number_means_not_on_the_list(operation: str) -> None:
    with StubbedList() as stubbed:
        if operation == "delete_opted_out_number":
            stubbed.expect_listed("+12065550101")  # then gone before the deletion
        stubbed.expect_error(
            operation,
            "+12065550101",
            "ResourceNotFoundException",
            404,
            ResourceType="opted-out-number",
            ResourceId="+12065550101",
        )
        assert stubbed.opt_out_list.opt_in("+12065550101", FAR_FUTURE).outcome is Outcome.NOT_ON_LIST
        stubbed.stubber.assert_no_pending_responses()


@pytest.mark.parametrize("operation", ["describe_opted_out_numbers", "delete_opted_out_number"])
@pytest.mark.parametrize("fields", [{}, {"ResourceType": "opt-out-list", "ResourceId": LIST}, {"ResourceType": "pool"}])
def test_resource_not_found_of_any_other_type_is_transient_never_an_opt_in_done(operation: str, fields) -> None:
    with StubbedList() as stubbed:
        if operation == "delete_opted_out_number":
            stubbed.expect_listed("+12065550101")
        stubbed.expect_error(operation, "+12065550101", "ResourceNotFoundException", 404, **fields)
        with pytest.raises(TransientError, match="not found"):
            stubbed.opt_out_list.opt_in("+12065550101", FAR_FUTURE)


def test_a_number_the_end_user_opted_out_by_keyword_is_never_deleted() -> None:
    with StubbedList() as stubbed:  # no deletion queued: one would fail the test
        stubbed.expect_listed("+12065550101", end_user=True)
        applied = stubbed.opt_out_list.opt_in("+12065550101", FAR_FUTURE)
        stubbed.stubber.assert_no_pending_responses()
    assert applied.outcome is Outcome.REFUSED and "EndUserOptedOut" in applied.reason


@pytest.mark.parametrize(
    ("operation", "method"), [("put_opted_out_number", "opt_out"), ("describe_opted_out_numbers", "opt_in")]
)
def test_a_missing_list_is_transient_never_a_dropped_change(operation: str, method: str) -> None:
    with StubbedList() as stubbed:
        stubbed.expect_error(
            operation, "+12065550101", "ResourceNotFoundException", 404, ResourceType="opt-out-list", ResourceId=LIST
        )
        with pytest.raises(TransientError, match="opt-out-list not found"):
            getattr(stubbed.opt_out_list, method)("+12065550101", FAR_FUTURE)


@pytest.mark.parametrize(
    ("code", "fields"),
    [
        ("ConflictException", {"Reason": "RESOURCE_MODIFICATION_NOT_ALLOWED"}),
        ("ValidationException", {"Reason": "OTHER"}),
    ],
)
def test_a_deletion_refused_by_the_service_rules_is_an_expected_outcome_with_its_reason(code: str, fields) -> None:
    with StubbedList() as stubbed:
        stubbed.expect_listed("+12065550101")
        stubbed.expect_error("delete_opted_out_number", "+12065550101", code, 400, **fields)
        applied = stubbed.opt_out_list.opt_in("+12065550101", FAR_FUTURE)
        assert applied.outcome is Outcome.REFUSED
        assert code in applied.reason and fields["Reason"] in applied.reason
        assert stubbed.sleeps == []  # not retried


def test_an_opt_out_the_service_refuses_is_a_permanent_failure() -> None:
    with StubbedList() as stubbed:
        stubbed.expect_error(
            "put_opted_out_number", "+12065550101", "ValidationException", 400, Reason="CANNOT_ADD_OPTED_OUT_NUMBER"
        )
        with pytest.raises(OptOutRefused, match="CANNOT_ADD_OPTED_OUT_NUMBER"):
            stubbed.opt_out_list.opt_out("+12065550101", FAR_FUTURE)


def test_a_number_the_service_cannot_parse_is_poison_not_a_refusal() -> None:
    with StubbedList() as stubbed:
        stubbed.expect_error("put_opted_out_number", "+12065550101", "ValidationException", 400, Reason="CANNOT_PARSE")
        with pytest.raises(PoisonRecordError) as caught:
            stubbed.opt_out_list.opt_out("+12065550101", FAR_FUTURE)
        assert not isinstance(caught.value, OptOutRefused)


def test_a_list_name_the_service_rejects_is_a_deployment_problem_not_a_bad_record() -> None:
    with StubbedList() as stubbed:
        stubbed.expect_error(
            "put_opted_out_number",
            "+12065550101",
            "ValidationException",
            400,
            Reason="FIELD_VALIDATION_FAILED",
            Fields=[{"Name": "OptOutListName", "Message": "bad name"}],
        )
        with pytest.raises(TransientError):
            stubbed.opt_out_list.opt_out("+12065550101", FAR_FUTURE)


@pytest.mark.parametrize("phone", ["12065550101", "206-555-0101", "+0123", "+1234567890123456", "", None])
def test_invalid_numbers_are_poison_and_never_sent(phone) -> None:
    with StubbedList() as stubbed:  # no response queued: any call would fail the test
        with pytest.raises(PoisonRecordError, match=r"E\.164"):
            stubbed.opt_out_list.opt_out(phone, FAR_FUTURE)
        with pytest.raises(PoisonRecordError, match=r"E\.164"):
            stubbed.opt_out_list.opt_in(phone, FAR_FUTURE)


def test_throttling_is_retried_with_bounded_backoff() -> None:
    with StubbedList(max_attempts=3) as stubbed:
        stubbed.expect_error("put_opted_out_number", "+12065550101", "ThrottlingException", 400)
        stubbed.expect_error("put_opted_out_number", "+12065550101", "InternalServerException", 500)
        stubbed.expect_put("+12065550101")
        assert stubbed.opt_out_list.opt_out("+12065550101", FAR_FUTURE).outcome is Outcome.OPTED_OUT
        assert len(stubbed.sleeps) == 2
        assert all(0 <= delay <= stubbed.opt_out_list.retry.cap_s for delay in stubbed.sleeps)
        stubbed.stubber.assert_no_pending_responses()


def test_throttling_past_the_attempts_is_transient() -> None:
    with StubbedList(max_attempts=3) as stubbed:
        stubbed.expect_listed("+12065550101")
        for _ in range(3):
            stubbed.expect_error("delete_opted_out_number", "+12065550101", "ThrottlingException", 400)
        with pytest.raises(TransientError, match="still failing"):
            stubbed.opt_out_list.opt_in("+12065550101", FAR_FUTURE)
        assert len(stubbed.sleeps) == 2


def test_no_call_starts_unless_one_whole_call_fits_before_the_deadline() -> None:
    clock = FakeClock()
    with StubbedList() as stubbed:  # nothing queued: a call would fail the test
        stubbed.retrying(clock=clock)
        with pytest.raises(TransientError, match="not enough time"):
            stubbed.opt_out_list.opt_out("+12065550101", deadline=clock.now + CALL_BUDGET_S - 0.001)
    with StubbedList() as stubbed:
        stubbed.retrying(clock=clock)
        stubbed.expect_put("+12065550101")
        stubbed.opt_out_list.opt_out("+12065550101", deadline=clock.now + CALL_BUDGET_S)
        stubbed.stubber.assert_no_pending_responses()


def test_the_call_budget_covers_the_clients_connect_and_read_timeouts() -> None:
    assert CLIENT_CONFIG.connect_timeout + CLIENT_CONFIG.read_timeout <= CALL_BUDGET_S
    assert OptOutList(LIST, object()).retry.call_budget_s == CALL_BUDGET_S


def test_an_opt_in_needing_two_calls_stops_before_the_second_when_time_runs_out() -> None:
    clock = FakeClock()
    with StubbedList() as stubbed:
        stubbed.retrying(clock=clock)
        stubbed.stubber.add_response(
            "describe_opted_out_numbers",
            {"OptedOutNumbers": [{"OptedOutNumber": "+12065550101", "OptedOutTimestamp": 1, "EndUserOptedOut": False}]},
            {"OptOutListName": LIST, "OptedOutNumbers": ["+12065550101"]},
        )
        describe = stubbed.client.describe_opted_out_numbers

        def slow_describe(**params):
            clock.now += 1.0  # the lookup took a second: a deletion no longer fits
            return describe(**params)

        stubbed.client.describe_opted_out_numbers = slow_describe
        with pytest.raises(TransientError, match="not enough time"):
            stubbed.opt_out_list.opt_in("+12065550101", deadline=clock.now + CALL_BUDGET_S + 0.5)
        stubbed.stubber.assert_no_pending_responses()


def test_retries_stop_when_the_backoff_and_one_more_call_would_pass_the_deadline() -> None:
    clock = FakeClock()
    with StubbedList(max_attempts=10) as stubbed:
        stubbed.retrying(clock=clock, sleep=clock.sleep, base_s=1.0, cap_s=1.0)
        for _ in range(10):
            stubbed.expect_error("put_opted_out_number", "+12065550101", "ThrottlingException", 400)
        deadline = clock.now + CALL_BUDGET_S + 0.5
        with pytest.raises(TransientError):
            stubbed.opt_out_list.opt_out("+12065550101", deadline=deadline)
    assert clock.now + CALL_BUDGET_S <= deadline  # never slept into the last call's time


def test_the_handler_keeps_one_call_and_its_own_margin_inside_the_remaining_time() -> None:
    clock = FakeClock()
    event = optin_event([row("userA", "+12065550101", 0)])
    context = FakeLambdaContext()
    context.get_remaining_time_in_millis = lambda: int((CALL_BUDGET_S + 1.0) * 1000)  # < budget + 2 s margin
    with StubbedList() as stubbed:  # nothing queued: a call would fail the test
        stubbed.retrying(clock=clock)
        updater = OptInUpdater(
            SETTINGS,
            opt_out_list=stubbed.opt_out_list,
            versions=InMemoryVersions(),
            clock=clock,
        )
        assert updater.handle(event, context) == {"batchItemFailures": [{"itemIdentifier": sequences(event)[0]}]}


def test_access_denied_is_transient_so_the_batch_reaches_the_failure_destination() -> None:
    with StubbedList() as stubbed:
        stubbed.expect_error(
            "put_opted_out_number", "+12065550101", "AccessDeniedException", 403, Reason="ACCOUNT_DISABLED"
        )
        with pytest.raises(TransientError, match="ACCOUNT_DISABLED"):
            stubbed.opt_out_list.opt_out("+12065550101", FAR_FUTURE)
        assert stubbed.sleeps == []


def test_a_changed_number_opts_out_the_old_number_first() -> None:
    change = OptInChange("user1", "update", "+12065550122", opted_in=True, previous_phone="+12065550102")
    with StubbedList() as stubbed:
        stubbed.expect_put("+12065550102")
        stubbed.expect_opt_in("+12065550122")
        applied = stubbed.opt_out_list.apply(change, FAR_FUTURE)
        assert [entry.outcome for entry in applied] == [Outcome.OPTED_OUT, Outcome.OPTED_IN]
        stubbed.stubber.assert_no_pending_responses()


def test_an_invalid_old_number_is_skipped_with_a_reason() -> None:
    change = OptInChange("user1", "update", "+12065550122", opted_in=False, previous_phone="555-0102")
    with StubbedList() as stubbed:
        stubbed.expect_put("+12065550122")
        applied = stubbed.opt_out_list.apply(change, FAR_FUTURE)
        assert applied[0].outcome is Outcome.SKIPPED and "E.164" in applied[0].reason
        assert applied[1].outcome is Outcome.OPTED_OUT


def test_a_row_without_phone_has_nothing_to_apply() -> None:
    with StubbedList() as stubbed:
        applied = stubbed.opt_out_list.apply(OptInChange("user1", "insert", None, opted_in=False), FAR_FUTURE)
        assert [entry.outcome for entry in applied] == [Outcome.SKIPPED]


# ---------------------------------------------------------------- OptInUpdater: batches
def test_an_update_that_leaves_the_number_opted_in_deletes_nothing() -> None:
    """A full reload, or an update of `lastupdate` only, must not undo a STOP the user texted."""
    unchanged = {"userid": "userA", "phone": "+12065550101", "optin": 1, "lastupdate": 1}
    event = optin_event([row("userA", "+12065550101", 1, **{"before-image": unchanged})])
    with StubbedList() as stubbed:  # nothing queued: a lookup or deletion would fail the test
        outcome = updater_with(stubbed).process(event["Records"], FAR_FUTURE)
    assert outcome.response() == {"batchItemFailures": []}
    assert outcome.counts["Ignored"] == 1 and outcome.counts["OptIns"] == 0


def test_a_row_without_phone_is_counted_as_ignored() -> None:
    event = optin_event([row("userA", None, 0, operation="insert")])
    with StubbedList() as stubbed:  # nothing queued: a call to the service would fail the test
        outcome = updater_with(stubbed).process(event["Records"], FAR_FUTURE)
    assert outcome.response() == {"batchItemFailures": []}
    assert outcome.counts["Ignored"] == 1 and outcome.counts["OptOuts"] == 0


def test_an_update_from_opted_out_to_opted_in_is_applied() -> None:
    before = {"userid": "userA", "phone": "+12065550101", "optin": 0, "lastupdate": 1}
    event = optin_event([row("userA", "+12065550101", 1, **{"before-image": before})])
    with StubbedList() as stubbed:
        stubbed.expect_opt_in("+12065550101")
        outcome = updater_with(stubbed).process(event["Records"], FAR_FUTURE)
        stubbed.stubber.assert_no_pending_responses()
    assert outcome.counts["OptIns"] == 1


def test_an_opt_in_without_before_image_of_a_keyword_opt_out_is_refused_and_not_reported() -> None:
    event = optin_event([row("userA", "+12065550101", 1, operation="load")])
    metrics = RecordingMetrics()
    with StubbedList() as stubbed:  # no deletion queued
        stubbed.expect_listed("+12065550101", end_user=True)
        updater = updater_with(stubbed, metrics)
        outcome = updater.process(event["Records"], FAR_FUTURE)
        updater._publish(outcome)
        stubbed.stubber.assert_no_pending_responses()
    assert outcome.response() == {"batchItemFailures": []}
    assert metrics.values["Refused"] == 1 and metrics.values["OptIns"] == 0


def test_changes_are_applied_in_sequence_order_per_user() -> None:
    event = optin_event(
        [
            row("userA", "+12065550101", 0),
            row("userB", "+12065550102", 0),
            row("userA", "+12065550101", 1),
            row("userB", "+12065550102", 1, operation="delete"),
        ]
    )
    event["Records"].reverse()  # delivered out of order: the updater sorts by sequence number
    with StubbedList() as stubbed:
        stubbed.expect_put("+12065550101")
        stubbed.expect_put("+12065550102")
        stubbed.expect_opt_in("+12065550101")
        stubbed.expect_put("+12065550102")
        metrics = RecordingMetrics()
        outcome = updater_with(stubbed, metrics).process(event["Records"], FAR_FUTURE)
        stubbed.stubber.assert_no_pending_responses()
    assert outcome.response() == {"batchItemFailures": []}
    assert outcome.counts["OptOuts"] == 3 and outcome.counts["OptIns"] == 1


def test_a_transient_failure_holds_back_that_users_later_changes_and_later_opt_ins() -> None:
    event = optin_event(
        [
            row("userA", "+12065550101", 0),
            row("userB", "+12065550102", 0),  # throttled past the retries
            row("userC", "+12065550103", 0),  # another user's opt-out: applied at once
            row("userB", "+12065550102", 1),  # must not be applied before B's opt-out above
            row("userC", "+12065550103", 1),  # an opt-in after the failure: redelivered anyway, waits
            row("userC", "+12065550103", 0),  # C's later change waits behind it
            row("userA", "+12065550101", 0),  # another opt-out: applied at once
        ]
    )
    seqs = sequences(event)
    with StubbedList(max_attempts=2) as stubbed:
        stubbed.expect_put("+12065550101")
        stubbed.expect_error("put_opted_out_number", "+12065550102", "ThrottlingException", 400)
        stubbed.expect_error("put_opted_out_number", "+12065550102", "ThrottlingException", 400)
        stubbed.expect_put("+12065550103")
        stubbed.expect_put("+12065550101")
        outcome = updater_with(stubbed).process(event["Records"], FAR_FUTURE)
        stubbed.stubber.assert_no_pending_responses()
    assert outcome.response() == {"batchItemFailures": [{"itemIdentifier": seqs[1]}]}
    assert outcome.held_back == seqs[3:6]
    assert list(outcome.failed_transient) == [seqs[1]]


def test_an_invalid_phone_fails_that_record_only_and_holds_back_no_other_users_change() -> None:
    event = optin_event(
        [
            row("userA", "+12065550101", 0),
            row("userB", "206-555-0102", 0),  # invalid: reported, the rest goes on
            row("userB", "+12065550102", 0),  # the same user's opt-out: applied at once
            row("userC", "+12065550103", 1),  # another user's opt-in: applied at once
            row("userD", "+12065550104", 0),
        ]
    )
    seqs = sequences(event)
    metrics = RecordingMetrics()
    with StubbedList() as stubbed:
        stubbed.expect_put("+12065550101")
        stubbed.expect_put("+12065550102")
        stubbed.expect_opt_in("+12065550103")
        stubbed.expect_put("+12065550104")
        updater = updater_with(stubbed, metrics)
        outcome = updater.process(event["Records"], FAR_FUTURE)
        updater._publish(outcome)
        stubbed.stubber.assert_no_pending_responses()
    assert outcome.response() == {"batchItemFailures": [{"itemIdentifier": seqs[1]}]}
    assert "E.164" in outcome.failed_permanent[seqs[1]]
    assert outcome.held_back == []
    assert metrics.values["Invalid"] == 1 and metrics.values["OptOuts"] == 3 and metrics.values["OptIns"] == 1


def test_a_permanent_failure_holds_back_that_users_later_opt_ins_but_not_their_opt_outs() -> None:
    event = optin_event(
        [
            row("userB", "206-555-0102", 0),  # invalid: perhaps an opt-out that could not be applied
            row("userB", "+12065550102", 1),  # waits: B stays opted out until the failure is dealt with
            row("userB", "+12065550112", 0),  # an opt-out is never held back
        ]
    )
    seqs = sequences(event)
    with StubbedList() as stubbed:  # nothing for +12065550102: a lookup or deletion would fail the test
        stubbed.expect_put("+12065550112")
        outcome = updater_with(stubbed).process(event["Records"], FAR_FUTURE)
        stubbed.stubber.assert_no_pending_responses()
    assert outcome.response() == {"batchItemFailures": [{"itemIdentifier": seqs[0]}]}
    assert outcome.held_back == [seqs[1]]


def test_after_a_permanent_failure_an_opt_in_waits_if_its_number_is_changed_twice() -> None:
    """Opt-out then opt-in of one number after the reported record: both are delivered again, and
    repeating the pair would delete the number a second time within 30 days. So the opt-in waits
    for the redelivery, and an opt-in of a number changed once is applied at once."""
    event = optin_event(
        [
            row("userA", "bad", 0),
            row("userC", "+12065550103", 0),  # applied
            row("userC", "+12065550103", 1),  # waits: +12065550103 was changed after the failure
            row("userD", "+12065550104", 1),  # the only change of its number: applied
        ]
    )
    seqs = sequences(event)
    with StubbedList() as stubbed:
        stubbed.expect_put("+12065550103")
        stubbed.expect_opt_in("+12065550104")
        outcome = updater_with(stubbed).process(event["Records"], FAR_FUTURE)
        stubbed.stubber.assert_no_pending_responses()
    assert outcome.response() == {"batchItemFailures": [{"itemIdentifier": seqs[0]}]}
    assert outcome.held_back == [seqs[2]]


def test_an_opt_in_waits_if_a_later_change_in_the_batch_touches_its_number_and_so_does_that_change() -> None:
    """The later opt-out waits with the opt-in (it was applied at once before the version table): if
    it were applied, the table would hold its version and the opt-in would be superseded on every
    later delivery, never applied, so a third change of the number could pass the 30-day deletion
    rule or not depending on how Lambda delivered the batch. Both come back with the redelivery."""
    event = optin_event(
        [
            row("userA", "bad", 0),
            row("userC", "+12065550103", 1),  # waits: changed again below
            row("userC", "+12065550103", 0),  # waits behind it
        ]
    )
    versions = InMemoryVersions()
    with StubbedList() as stubbed:  # nothing queued: any call would fail the test
        outcome = updater_with(stubbed, versions=versions).process(event["Records"], FAR_FUTURE)
        stubbed.stubber.assert_no_pending_responses()
    assert outcome.held_back == sequences(event)[1:]
    assert outcome.response() == {"batchItemFailures": [{"itemIdentifier": sequences(event)[0]}]}
    # The waiting opt-out recorded no intent: on the redelivery the opt-in is not superseded.
    assert versions.stored == {"+12065550103": record_version(sequences(event)[1])}


def test_the_lowest_failed_sequence_is_reported_when_several_fail() -> None:
    event = optin_event(
        [
            row("userA", "+12065550101", 0),  # throttled
            row("userB", "bad", 0),  # invalid
        ]
    )
    seqs = sequences(event)
    with StubbedList(max_attempts=1) as stubbed:
        stubbed.expect_error("put_opted_out_number", "+12065550101", "ThrottlingException", 400)
        outcome = updater_with(stubbed).process(event["Records"], FAR_FUTURE)
    assert outcome.response() == {"batchItemFailures": [{"itemIdentifier": seqs[0]}]}
    assert set(outcome.failed_permanent) == {seqs[1]}


def test_refused_deletions_are_counted_and_not_reported() -> None:
    event = optin_event([row("userA", "+12065550101", 1)])
    metrics = RecordingMetrics()
    with StubbedList() as stubbed:
        stubbed.expect_listed("+12065550101")
        stubbed.expect_error(
            "delete_opted_out_number",
            "+12065550101",
            "ConflictException",
            409,
            Reason="RESOURCE_MODIFICATION_NOT_ALLOWED",
        )
        updater = updater_with(stubbed, metrics)
        outcome = updater.process(event["Records"], FAR_FUTURE)
        updater._publish(outcome)
    assert outcome.response() == {"batchItemFailures": []}
    assert metrics.values["Refused"] == 1 and metrics.values["OptIns"] == 0


def test_refused_opt_outs_are_counted_and_reported() -> None:
    event = optin_event([row("userA", "+12065550101", 0)])
    with StubbedList() as stubbed:
        stubbed.expect_error(
            "put_opted_out_number", "+12065550101", "ValidationException", 400, Reason="CANNOT_ADD_OPTED_OUT_NUMBER"
        )
        outcome = updater_with(stubbed).process(event["Records"], FAR_FUTURE)
    assert outcome.response() == {"batchItemFailures": [{"itemIdentifier": sequences(event)[0]}]}
    assert outcome.counts["Refused"] == 1 and outcome.counts["Invalid"] == 0


def test_bad_base64_is_poison() -> None:
    event = optin_event([row("userA", "+12065550101", 0)])
    event["Records"][0]["kinesis"]["data"] = "%%%"
    with StubbedList() as stubbed:
        outcome = updater_with(stubbed).process(event["Records"], FAR_FUTURE)
    assert "base64" in outcome.failed_permanent[sequences(event)[0]]


def test_out_of_time_leaves_the_rest_for_the_retry() -> None:
    event = optin_event([row("userA", "+12065550101", 0), row("userB", "+12065550102", 0)])
    with StubbedList() as stubbed:
        outcome = updater_with(stubbed).process(event["Records"], deadline=0.0)
    assert outcome.response() == {"batchItemFailures": [{"itemIdentifier": sequences(event)[0]}]}


def test_the_role_allows_exactly_the_calls_the_updater_makes_on_its_list_only() -> None:
    statements = RESOURCES["OptInUpdaterRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    on_list = [
        statement for statement in statements if statement["Resource"] == {"Fn::GetAtt": ["SmsOptOutList", "Arn"]}
    ]
    assert [sorted(statement["Action"]) for statement in on_list] == [
        ["sms-voice:DeleteOptedOutNumber", "sms-voice:DescribeOptedOutNumbers", "sms-voice:PutOptedOutNumber"]
    ]
    assert not [s for s in statements if any(str(a).startswith("sms-voice:") for a in s["Action"]) and s not in on_list]


def test_configuration_comes_from_the_environment() -> None:
    config = OptInUpdaterSettings.from_env(
        {
            "OPT_OUT_LIST_NAME": LIST,
            "SOURCE_TABLE": "optin_status",
            "SOURCE_SCHEMA": "blog_db",
            "BEFORE_IMAGE_FIELD": "BI",
            "VERSION_TABLE_NAME": VERSION_TABLE,
        }
    )
    assert config == OptInUpdaterSettings(LIST, DmsSource("optin_status", "blog_db", "BI"), VERSION_TABLE)
    with pytest.raises(ConfigurationError, match="OPT_OUT_LIST_NAME"):
        OptInUpdaterSettings.from_env({"SOURCE_TABLE": "optin_status", "VERSION_TABLE_NAME": VERSION_TABLE})
    with pytest.raises(ConfigurationError, match="VERSION_TABLE_NAME"):
        OptInUpdaterSettings.from_env({"OPT_OUT_LIST_NAME": LIST, "SOURCE_TABLE": "optin_status"})


# ---------------------------------------------------------------- the handler, unchanged, against the emulation
@pytest.fixture
def sms() -> Iterator[SmsEmulation]:
    with SmsEmulation() as emulation:
        emulation.create_opt_out_list(LIST)
        yield emulation




@pytest.fixture
def handler(aws, sms: SmsEmulation):
    create_version_table()
    return load_handler_module(
        "optin_updater", OPT_OUT_LIST_NAME=LIST, SOURCE_TABLE="optin_status", VERSION_TABLE_NAME=VERSION_TABLE
    )


def invoke(handler, event: dict) -> dict:
    return handler.lambda_handler(event, FakeLambdaContext(function_name="OptInUpdater"))


def test_event_optin_load(handler, sms: SmsEmulation) -> None:
    assert invoke(handler, load_event("dms-optin-load.json")) == {"batchItemFailures": []}
    assert sms.opted_out_numbers(LIST) == {"+12065550103"}


def test_event_optout_update_with_a_changed_number(handler, sms: SmsEmulation) -> None:
    assert invoke(handler, load_event("dms-optout-update.json")) == {"batchItemFailures": []}
    assert sms.opted_out_numbers(LIST) == {"+12065550101", "+12065550102"}


def test_event_delete(handler, sms: SmsEmulation) -> None:
    assert invoke(handler, load_event("dms-delete.json")) == {"batchItemFailures": []}
    assert sms.opted_out_numbers(LIST) == {"+12065550103"}


def test_event_invalid_phone(handler, sms: SmsEmulation) -> None:
    event = load_event("dms-invalid-phone.json")
    assert invoke(handler, event) == {"batchItemFailures": [{"itemIdentifier": sequences(event)[1]}]}
    assert sms.opted_out_numbers(LIST) == {"+12065550104", "+12065550106"}


def test_event_control(handler, sms: SmsEmulation, capsys) -> None:
    assert invoke(handler, load_event("dms-control.json")) == {"batchItemFailures": []}
    assert sms.opted_out_numbers(LIST) == set()
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert metrics and metrics[-1]["Ignored"] == [3.0]


def test_event_optout_update_makes_exactly_these_calls(handler) -> None:
    with StubbedList() as stubbed:
        stubbed.expect_put("+12065550101")
        stubbed.expect_put("+12065550102")  # user2's previous number, from the before image
        stubbed.expect_opt_in("+12065550122")
        handler.updater.opt_out_list = stubbed.opt_out_list
        assert invoke(handler, load_event("dms-optout-update.json")) == {"batchItemFailures": []}
        stubbed.stubber.assert_no_pending_responses()


def run_like_the_event_source_mapping(handler, records: list[tuple[str, bytes]], retries: int = 5) -> list[str]:
    """Batches of 100 from the checkpoint; a record failing past `retries` goes to the destination."""
    event = optin_event(records)
    pending, to_destination, attempts = event["Records"], [], 0
    while pending:
        response = invoke(handler, {"Records": pending[:100]})
        failures = response["batchItemFailures"]
        if not failures:
            pending, attempts = pending[100:], 0
            continue
        failed = failures[0]["itemIdentifier"]
        position = next(i for i, record in enumerate(pending) if record["kinesis"]["sequenceNumber"] == failed)
        pending, attempts = pending[position:], attempts + 1
        if attempts > retries:
            to_destination.append(failed)
            pending, attempts = pending[1:], 0
    return to_destination


def test_generated_changes_leave_the_expected_opt_out_list(handler, sms: SmsEmulation) -> None:
    plan = plan_changes(40)
    to_destination = run_like_the_event_source_mapping(handler, plan.records)
    assert sms.opted_out_numbers(LIST) == plan.expected_opted_out
    expected_invalid = [sequences(optin_event(plan.records))[i] for i in plan.invalid_record_positions]
    assert to_destination == expected_invalid


def test_throttling_in_the_middle_still_converges_to_the_expected_list(handler, sms: SmsEmulation) -> None:
    plan = plan_changes(12)
    handler.updater.opt_out_list.retry = replace(handler.updater.opt_out_list.retry, max_attempts=1)
    sms.throttle_next(3)
    run_like_the_event_source_mapping(handler, plan.records)
    assert sms._throttle_next == 0  # the throttling did happen
    assert sms.opted_out_numbers(LIST) == plan.expected_opted_out


@pytest.mark.slow
def test_demo_end_to_end_under_the_local_runtime() -> None:
    """The template's pipeline under the local runtime: stream → mapping (bisect, retries) → function → list."""
    template = REPO_ROOT / "template.yaml"
    options = RuntimeOptions(template_path=template, parameter_overrides={"BatchingWindowSeconds": "0"})
    with Runtime(options) as runtime:
        sms = runtime.deployment.sms
        assert sms is not None, "the runtime serves the SMS emulation for AWS::SMSVOICE::OptOutList"
        list_name = str(runtime.template.ref("SmsOptOutList"))
        context = RuntimeDemoContext(runtime)
        demo = OptInDemo()
        demo.produce(context)
        runtime.drain(timeout_s=120)
        section = demo.report(context)
        assert section.problems == []
        assert section.accounted
        assert sms.opted_out_numbers(list_name) == demo.plan.expected_opted_out


def test_a_keyword_opt_out_survives_a_full_reload_and_a_later_opt_in(handler, sms: SmsEmulation) -> None:
    sms.opt_out_by_keyword(LIST, "+12065550101")  # the user texted STOP
    invoke(handler, optin_event([row("userA", "+12065550102", 0, operation="load")]))  # opted out in the app
    reload = optin_event(
        [
            row("userA", "+12065550101", 1, operation="load"),  # DMS reloads the table: no before image
            row("userB", "+12065550102", 1, operation="load"),
        ]
    )
    assert invoke(handler, reload) == {"batchItemFailures": []}
    assert sms.opted_out_numbers(LIST) == {"+12065550101"}
    assert sms.end_user_opted_out(LIST) == {"+12065550101"}


def test_repeating_a_batch_whose_first_record_is_invalid_spends_no_deletion_twice(sms: SmsEmulation) -> None:
    """If Lambda retried such a batch whole (no bisect) until it is dead-lettered, what was applied
    on the first try is repeated five times: nothing may be refused, and the list ends as each
    number's newest change says. userE's opt-in waits on the first try only: from the second on, the
    version table holds it as the number's newest change, so E's opt-out is superseded and can no
    longer put the number back, and the opt-in is applied (once: later tries find it off the list)."""
    list_ = OptOutList(LIST, boto3.client("pinpoint-sms-voice-v2", region_name="us-east-1"))
    updater = OptInUpdater(SETTINGS, opt_out_list=list_, versions=InMemoryVersions())
    for number in ("+12065550103", "+12065550105"):
        list_.opt_out(number, FAR_FUTURE)
    event = optin_event(
        [
            row("userB", "206-555-0102", 0),
            row("userC", "+12065550103", 1),  # on the list: deleted once, then found absent
            row("userD", "+12065550104", 0),
            row("userE", "+12065550105", 0),  # opted out and back in after the failure:
            row("userE", "+12065550105", 1),  # this opt-in waits for the redelivery
        ]
    )
    first = updater.process(event["Records"], FAR_FUTURE)
    assert sms.opted_out_numbers(LIST) == {"+12065550104", "+12065550105"}
    assert first.held_back == [sequences(event)[4]]
    outcomes = [first] + [updater.process(event["Records"], FAR_FUTURE) for _ in range(5)]
    assert all(outcome.response() == first.response() for outcome in outcomes)
    assert sum(outcome.counts["Refused"] for outcome in outcomes) == 0
    assert all(outcome.counts["Superseded"] == 1 and not outcome.held_back for outcome in outcomes[1:])
    assert sms.opted_out_numbers(LIST) == {"+12065550104"}
    rest = {"Records": event["Records"][1:]}  # the batch once the invalid record is dead-lettered
    assert updater.process(rest["Records"], FAR_FUTURE).counts["Refused"] == 0
    assert sms.opted_out_numbers(LIST) == {"+12065550104"}


@pytest.mark.slow
def test_an_invalid_phone_mid_batch_under_the_event_source_mapping_with_the_templates_settings(
    sms: SmsEmulation, handler
) -> None:
    kinesis, sqs = boto3.client("kinesis"), boto3.client("sqs")
    kinesis.create_stream(StreamName="optin-cdc", ShardCount=1)
    stream_arn = kinesis.describe_stream_summary(StreamName="optin-cdc")["StreamDescriptionSummary"]["StreamARN"]
    queue_url = sqs.create_queue(QueueName="failed")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    plan = plan_changes(24)
    (invalid,) = plan.invalid_record_positions
    assert 0 < invalid < len(plan.records) - 10 and len(plan.records) <= 100  # mid-stream, one batch
    sequence_numbers = [
        kinesis.put_record(StreamName="optin-cdc", PartitionKey=key, Data=data)["SequenceNumber"]
        for key, data in plan.records
    ]
    declared = declared_kinesis_event("OptInUpdaterFunction")
    config = MappingConfig(
        function_name="OptInUpdater",
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:OptInUpdater",
        source_arn=stream_arn,
        batch_size=declared["BatchSize"],
        starting_position=declared["StartingPosition"],
        maximum_retry_attempts=declared["MaximumRetryAttempts"],
        bisect_on_function_error=declared["BisectBatchOnFunctionError"],
        report_batch_item_failures=declared["FunctionResponseTypes"] == ["ReportBatchItemFailures"],
        on_failure_destination_arn=queue_arn,
    )
    mapping = EventSourceMapping(config, lambda event: InvocationResult(response=invoke(handler, event)))
    drain([mapping], timeout_s=120)

    assert sms.opted_out_numbers(LIST) == plan.expected_opted_out
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    batches = [json.loads(message["Body"])["KinesisBatchInfo"] for message in messages]
    assert [(info["startSequenceNumber"], info["endSequenceNumber"]) for info in batches] == [
        (sequence_numbers[invalid], sequence_numbers[invalid])
    ]
    assert mapping.stats.records_succeeded == len(plan.records) - 1


# ---------------------------------------------------------------- per-number order: the version table
def versions_table() -> NumberVersions:
    create_version_table()
    return NumberVersions(VERSION_TABLE)


def test_the_stored_version_only_moves_forward_and_an_equal_intent_is_started_again(aws) -> None:
    table = versions_table()
    v3, v5, v7 = (record_version(str(10**20 + n)) for n in (3, 5, 7))
    first = table.start([Intent("+12065550101", v5), Intent("+12065550102", v5)], FAR_FUTURE)
    assert first.started == {"+12065550101", "+12065550102"} and first.requests == 1
    older = table.start([Intent("+12065550101", v3)], FAR_FUTURE)
    assert older.superseded == {"+12065550101"} and not older.started
    # Equal: the same change delivered again (or its request retried after a lost response).
    assert table.start([Intent("+12065550101", v5)], FAR_FUTURE).started == {"+12065550101"}
    assert table.start([Intent("+12065550101", v7)], FAR_FUTURE).started == {"+12065550101"}
    read = table.read(["+12065550101", "+12065550102", "+12065550103"], FAR_FUTURE)
    assert read.versions == {"+12065550101": v7, "+12065550102": v5}


def test_an_intent_whose_response_was_lost_is_started_on_the_retry_not_superseded(aws) -> None:
    """The transaction was applied but its answer lost: the retry meets its own version, equal, which
    must count as started (a stream processor's guard would call it superseded and skip the change)."""
    create_version_table()
    dynamodb = boto3.client("dynamodb")
    lost: list[str] = []

    class LosingFirstAnswer:
        def __getattr__(self, name: str):
            return getattr(dynamodb, name)

        def transact_write_items(self, **request):
            response = dynamodb.transact_write_items(**request)
            if not lost:
                lost.append("once")
                raise ReadTimeoutError(endpoint_url="http://127.0.0.1")
            return response

    table = NumberVersions(VERSION_TABLE, LosingFirstAnswer(), retry=replace(WRITE_RETRY, sleep=lambda _: None))
    report = table.start([Intent("+12065550101", record_version("100000000000000000007"))], FAR_FUTURE)
    assert lost and report.started == {"+12065550101"} and report.requests == 2


def test_versions_of_more_numbers_than_one_request_takes_are_read_in_chunks(aws) -> None:
    table = versions_table()
    numbers = [f"+1206555{n:04d}" for n in range(250)]
    version = record_version("49590338271490256608559692538361571095921575989136588898")
    for start in range(0, 250, 100):
        table.start([Intent(number, version) for number in numbers[start : start + 100]], FAR_FUTURE)
    read = table.read(numbers, FAR_FUTURE)
    assert read.versions == dict.fromkeys(numbers, version)
    assert read.requests == 3


def test_a_version_table_that_cannot_be_read_is_a_transient_failure(aws) -> None:
    with pytest.raises(TransientError, match="ResourceNotFoundException"):
        NumberVersions("NoSuchTable").read(["+12065550101"], FAR_FUTURE)


def test_reading_retries_throttling_and_unprocessed_keys_then_stops_at_the_deadline() -> None:
    client = boto3.client("dynamodb", region_name="us-east-1")
    clock = FakeClock()
    table = NumberVersions(VERSION_TABLE, client, retry=replace(WRITE_RETRY, clock=clock, sleep=clock.sleep))
    keys = {"Keys": [{"phone": {"S": "+12065550101"}}, {"phone": {"S": "+12065550102"}}], "ConsistentRead": True}
    left = {"Keys": [{"phone": {"S": "+12065550102"}}], "ConsistentRead": True}
    item = {"phone": {"S": "+12065550101"}, "recordVersion": {"S": "021:100000000000000000007:000000"}}
    with Stubber(client) as stubber:
        stubber.add_client_error("batch_get_item", "ProvisionedThroughputExceededException", http_status_code=400)
        stubber.add_response(
            "batch_get_item",
            {"Responses": {VERSION_TABLE: [item]}, "UnprocessedKeys": {VERSION_TABLE: left}},
            {"RequestItems": {VERSION_TABLE: keys}},
        )
        stubber.add_response(
            "batch_get_item", {"Responses": {VERSION_TABLE: []}}, {"RequestItems": {VERSION_TABLE: left}}
        )
        read = table.read(["+12065550102", "+12065550101"], FAR_FUTURE)
        stubber.assert_no_pending_responses()
    assert read.versions == {"+12065550101": "021:100000000000000000007:000000"} and read.requests == 3
    assert len(clock.sleeps) == 2
    with Stubber(client), pytest.raises(TransientError, match="deadline"):  # nothing queued: a call would fail
        table.read(["+12065550101"], deadline=clock.now + CALL_BUDGET_S - 0.001)


@pytest.fixture
def guarded(aws, sms: SmsEmulation) -> OptInUpdater:
    """The updater on the SMS emulation and the version table in moto, as deployed."""
    create_version_table()
    list_ = OptOutList(LIST, boto3.client("pinpoint-sms-voice-v2", region_name="us-east-1"))
    return OptInUpdater(SETTINGS, opt_out_list=list_, metrics=RecordingMetrics())


def test_a_change_older_than_a_numbers_stored_version_is_superseded_and_never_applied(
    guarded: OptInUpdater, sms: SmsEmulation
) -> None:
    event = optin_event([row("userA", "+12065550101", 0), row("userA", "+12065550101", 1)])
    assert guarded.process(event["Records"], FAR_FUTURE).response() == {"batchItemFailures": []}
    assert sms.opted_out_numbers(LIST) == set()  # put, then removed
    older = guarded.process(event["Records"][:1], FAR_FUTURE)  # the older half, delivered again
    guarded._publish(older)
    assert older.response() == {"batchItemFailures": []}
    assert older.counts["Superseded"] == 1 and older.counts["OptOuts"] == 0
    assert guarded.metrics.values["RecordsSuperseded"] == 1 and guarded.metrics.values["DynamoDBRequests"] == 1
    assert sms.opted_out_numbers(LIST) == set()  # not put back


def test_a_change_delivered_again_after_its_intent_was_recorded_is_applied(guarded: OptInUpdater, sms) -> None:
    """The invocation died between recording the change's start and applying it: the redelivery,
    equal to the stored version, must apply it; later deliveries find it applied and delete nothing."""
    event = optin_event([row("userA", "+12065550101", 1)])
    guarded.opt_out_list.opt_out("+12065550101", FAR_FUTURE)
    NumberVersions(VERSION_TABLE).start([Intent("+12065550101", record_version(sequences(event)[0]))], FAR_FUTURE)
    outcomes = [guarded.process(event["Records"], FAR_FUTURE) for _ in range(3)]
    assert sms.opted_out_numbers(LIST) == set()
    assert [outcome.counts["OptIns"] for outcome in outcomes] == [1, 1, 1]
    assert sum(outcome.counts["Refused"] + outcome.counts["Superseded"] for outcome in outcomes) == 0


def test_a_replay_from_the_on_failure_destination_applies_only_what_is_still_newest(guarded: OptInUpdater, sms) -> None:
    event = optin_event(
        [
            row("userA", "+12065550101", 1),  # dead-lettered, say
            row("userA", "+12065550101", 0),  # applied
            row("userB", "+12065550102", 0),  # dead-lettered: nothing newer about its number
        ]
    )
    records = event["Records"]
    guarded.process(records[1:2], FAR_FUTURE)
    replay = guarded.process([records[0], records[2]], FAR_FUTURE)
    assert replay.counts["Superseded"] == 1 and replay.counts["OptOuts"] == 1 and replay.counts["OptIns"] == 0
    assert sms.opted_out_numbers(LIST) == {"+12065550101", "+12065550102"}


def test_a_change_leaves_alone_only_those_of_its_numbers_that_hold_a_newer_change(guarded: OptInUpdater, sms) -> None:
    """user1 moved from ...102 to ...122; ...122 has since been changed by a newer record. The old
    number is still opted out (nothing newer about it), the new one is left to its newer change."""
    before = {"userid": "user1", "phone": "+12065550102", "optin": 1}
    event = optin_event([row("user1", "+12065550122", 1, **{"before-image": before})])
    guarded.opt_out_list.opt_out("+12065550122", FAR_FUTURE)  # what the newer change did
    newer = record_version(str(int(sequences(event)[0]) + 1))
    NumberVersions(VERSION_TABLE).start([Intent("+12065550122", newer)], FAR_FUTURE)
    outcome = guarded.process(event["Records"], FAR_FUTURE)
    assert outcome.counts["OptOuts"] == 1 and outcome.counts["OptIns"] == 0 and outcome.counts["Superseded"] == 0
    assert sms.opted_out_numbers(LIST) == {"+12065550102", "+12065550122"}


def test_without_its_versions_no_change_is_applied(aws, sms: SmsEmulation) -> None:
    list_ = OptOutList(LIST, boto3.client("pinpoint-sms-voice-v2", region_name="us-east-1"))
    updater = OptInUpdater(OptInUpdaterSettings(LIST, SOURCE, "NoSuchTable"), opt_out_list=list_)
    event = optin_event([row("userA", "+12065550101", 0), row("userB", "+12065550102", 0)])
    outcome = updater.process(event["Records"], FAR_FUTURE)
    assert outcome.response() == {"batchItemFailures": [{"itemIdentifier": sequences(event)[0]}]}
    assert all("ResourceNotFoundException" in reason for reason in outcome.failed_transient.values())
    assert len(outcome.failed_transient) == 2
    assert sms.opted_out_numbers(LIST) == set()


def test_a_change_whose_start_cannot_be_recorded_fails_transiently_and_is_not_applied() -> None:
    class RefusingOne(InMemoryVersions):
        def start(self, intents: list[Intent], deadline: float) -> IntentReport:
            report = super().start([intent for intent in intents if intent.phone != "+12065550102"], deadline)
            report.failed["+12065550102"] = "ThrottlingException: not written before the deadline"
            return report

    event = optin_event([row("userA", "+12065550101", 0), row("userB", "+12065550102", 0)])
    with StubbedList() as stubbed:
        stubbed.expect_put("+12065550101")
        outcome = updater_with(stubbed, versions=RefusingOne()).process(event["Records"], FAR_FUTURE)
        stubbed.stubber.assert_no_pending_responses()
    reason = outcome.failed_transient[sequences(event)[1]]
    assert "+12065550102" in reason and "ThrottlingException" in reason
    assert outcome.response() == {"batchItemFailures": [{"itemIdentifier": sequences(event)[1]}]}


def test_intents_are_written_one_segment_at_a_time_where_no_number_repeats() -> None:
    """A number's newer intent is recorded only after its older change in the batch has been applied."""

    class Recording(InMemoryVersions):
        def __init__(self) -> None:
            super().__init__()
            self.requests: list[list[str]] = []

        def start(self, intents: list[Intent], deadline: float) -> IntentReport:
            self.requests.append(sorted(intent.phone for intent in intents))
            return super().start(intents, deadline)

    event = optin_event(
        [
            row("userA", "+12065550101", 0),
            row("userB", "+12065550102", 0),
            row("userA", "+12065550101", 1),  # ...101 again: a new segment
            row("userC", "+12065550103", 0),
        ]
    )
    versions = Recording()
    with StubbedList() as stubbed:
        stubbed.expect_put("+12065550101")
        stubbed.expect_put("+12065550102")
        stubbed.expect_opt_in("+12065550101")
        stubbed.expect_put("+12065550103")
        updater_with(stubbed, versions=versions).process(event["Records"], FAR_FUTURE)
        stubbed.stubber.assert_no_pending_responses()
    assert versions.requests == [["+12065550101", "+12065550102"], ["+12065550101", "+12065550103"]]
    versions.requests.clear()
    with StubbedList() as stubbed:  # delivered again: only the newest change of ...101 is applied again
        stubbed.expect_put("+12065550102")
        stubbed.expect_not_listed("+12065550101")
        stubbed.expect_put("+12065550103")
        outcome = updater_with(stubbed, versions=versions).process(event["Records"], FAR_FUTURE)
        stubbed.stubber.assert_no_pending_responses()
    assert versions.requests == [] and outcome.counts["Superseded"] == 1


def test_a_hostile_number_is_never_used_as_a_key(guarded: OptInUpdater, sms) -> None:
    """A number too long for a DynamoDB key (or not E.164 at all) fails its record only; it never
    reaches the version table, where it would fail the whole batch's read."""
    event = optin_event(
        [
            row("userA", "+" + "1" * 3000, 0),
            row("userB", "+12065550102", 0),
            row("userC", "\ud800", 1),
        ]
    )
    outcome = guarded.process(event["Records"], FAR_FUTURE)
    seqs = sequences(event)
    assert set(outcome.failed_permanent) == {seqs[0], seqs[2]}
    assert "E.164" in outcome.failed_permanent[seqs[0]]
    assert "surrogate" in outcome.failed_permanent[seqs[2]]
    assert sms.opted_out_numbers(LIST) == {"+12065550102"}


class FakeSmsClient:
    """An opt-out list in memory (no 30-day rule, no keywords): the calls OptOutList makes, with boto3's
    parameter names."""

    def __init__(self) -> None:
        self.numbers: set[str] = set()

    def put_opted_out_number(self, OptOutListName: str, OptedOutNumber: str) -> dict:
        self.numbers.add(OptedOutNumber)
        return {}

    def describe_opted_out_numbers(self, OptOutListName: str, OptedOutNumbers: list[str]) -> dict:
        listed = [number for number in OptedOutNumbers if number in self.numbers]
        return {"OptedOutNumbers": [{"OptedOutNumber": number, "EndUserOptedOut": False} for number in listed]}

    def delete_opted_out_number(self, OptOutListName: str, OptedOutNumber: str) -> dict:
        self.numbers.discard(OptedOutNumber)
        return {}


POOL = [f"+1206555010{n}" for n in range(4)]
change_rows = st.lists(
    st.tuples(st.sampled_from(["userA", "userB", "userC"]), st.sampled_from(POOL), st.integers(0, 1),
              st.none() | st.sampled_from(POOL)),
    min_size=1,
    max_size=12,
)  # fmt: skip
slices = st.lists(st.tuples(st.integers(0, 11), st.integers(1, 12)), min_size=1, max_size=8)


def effects(change: tuple[str, str, int, str | None]) -> dict[str, bool]:
    """number -> opted out, for each number one generated change acts on."""
    _, phone, optin, previous = change
    return {**({previous: True} if previous is not None and previous != phone else {}), phone: not optin}


@settings(max_examples=150)
@given(changes=change_rows, deliveries=slices)
def test_whatever_the_delivery_order_each_number_is_as_its_newest_delivered_change_left_it(changes, deliveries) -> None:
    """Lambda delivers contiguous runs of a shard, again and in any order (retries, bisected halves,
    redeliveries, replays). After every delivery each number is as the newest change delivered so far
    left it: an older change delivered later never takes it back."""
    records = [
        row(
            user,
            phone,
            optin,
            # A before image of another number: that number is opted out (one of the same number,
            # opted in, would make an opt-in that changes nothing, which this property leaves out).
            **({"before-image": {"userid": user, "phone": previous, "optin": 1}} if previous != phone else {}),
        )
        for user, phone, optin, previous in changes
    ]
    event_records = optin_event(records)["Records"]
    sms_client = FakeSmsClient()
    updater = OptInUpdater(
        SETTINGS,
        opt_out_list=OptOutList(LIST, sms_client),
        versions=InMemoryVersions(),
    )
    newest: dict[str, tuple[int, bool]] = {}
    for start, length in deliveries:
        delivered = range(min(start, len(changes) - 1), min(start + length, len(changes)))
        outcome = updater.process([event_records[i] for i in delivered], FAR_FUTURE)
        assert outcome.response() == {"batchItemFailures": []}
        for position in delivered:
            for number, opted_out in effects(changes[position]).items():
                if newest.get(number, (-1, False))[0] < position:
                    newest[number] = (position, opted_out)
        assert {number for number, (_, opted_out) in newest.items() if opted_out} == sms_client.numbers
