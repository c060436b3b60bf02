"""The record report a stream function answers when its invoker asks (the redrive), and only then."""

import json
from dataclasses import dataclass, field
from types import SimpleNamespace

from support import UNICORN_ENV, FakeLambdaContext, create_unicorn_table, kinesis_event, load_handler_module

from tributary_shared.record_report import report_requested

READING = {"Name": "Shadowfax", "StatusTime": "2026-11-21 12:00:00.000", "Distance": 1}


@dataclass
class AskingContext(FakeLambdaContext):
    client_context: object = field(default_factory=lambda: SimpleNamespace(custom={"recordReport": True}))


def test_only_an_invoker_that_asks_in_client_context_gets_the_report():
    assert report_requested(AskingContext())
    assert not report_requested(FakeLambdaContext())
    assert not report_requested(SimpleNamespace(client_context=SimpleNamespace(custom={"recordReport": "yes"})))


def test_a_stream_processor_reports_what_it_wrote_superseded_and_failed(aws):
    create_unicorn_table()
    handler = load_handler_module("stream_processor", **UNICORN_ENV).lambda_handler
    event = kinesis_event([("Shadowfax", json.dumps(READING).encode()), ("bad", b"{not json")])
    first = event["Records"][0]["kinesis"]["sequenceNumber"]
    bad = event["Records"][1]["kinesis"]["sequenceNumber"]

    plain = handler(event, FakeLambdaContext())
    assert plain == {"batchItemFailures": [{"itemIdentifier": bad}]}  # what the mappings get: unchanged

    again = handler(event, AskingContext())
    assert again["batchItemFailures"] == [{"itemIdentifier": bad}]
    report = again["recordReport"]
    assert report["records"] == 2 and report["superseded"] == [first]  # written by the first invocation
    assert report["failed"][bad]["permanent"] is True and report["failed"][bad]["reason"]
