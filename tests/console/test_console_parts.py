"""The console's parts without a browser: the shared port's dispatch, the actions' guard, the report's page
and its timeline."""

import json
import re
import urllib.request
from types import SimpleNamespace

import boto3

from tributary.console.actions import Burst
from tributary.console.report import render_report, timeline
from tributary.console.server import create_app
from tributary.console.snapshot import snapshot_json
from tributary.emulator import is_browser_request
from tributary.runtime.trace import TraceWriter


def test_only_unsigned_requests_for_the_console_paths_go_to_the_browser_app():
    assert is_browser_request({"PATH_INFO": "/", "QUERY_STRING": ""})
    assert is_browser_request({"PATH_INFO": "/console/api/events", "QUERY_STRING": ""})
    assert not is_browser_request({"PATH_INFO": "/", "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=..."})
    assert not is_browser_request({"PATH_INFO": "/", "QUERY_STRING": "X-Amz-Algorithm=AWS4&X-Amz-Signature=ab"})
    assert not is_browser_request({"PATH_INFO": "/moto-api/reset", "QUERY_STRING": ""})
    assert not is_browser_request({"PATH_INFO": "/consoles", "QUERY_STRING": ""})


def test_the_emulators_port_serves_the_browser_app_beside_moto(aws):
    def browser_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"console page"]

    aws.browser_app = browser_app
    try:
        with urllib.request.urlopen(f"{aws.endpoint_url}/", timeout=10) as response:
            assert response.read() == b"console page"
        kinesis = boto3.client("kinesis")
        kinesis.create_stream(StreamName="beside-the-console", ShardCount=1)
        assert "beside-the-console" in kinesis.list_streams()["StreamNames"]
    finally:
        aws.browser_app = None


class RecordingBursts:
    def __init__(self):
        self.asked = []

    def produce(self, names, per_unicorn, *, poison=False):
        self.asked.append((names, per_unicorn, poison))
        return Burst("wildrydes", len(names) * per_unicorn, 0, 0)


def test_actions_take_json_from_the_consoles_own_page_only():
    bursts = RecordingBursts()
    client = create_app(SimpleNamespace(bursts=bursts)).test_client()

    other_site = client.post("/console/api/burst", json={"unicorns": 2}, headers={"Origin": "https://example.com"})
    form_post = client.post("/console/api/burst", data="unicorns=2")
    own_page = client.post("/console/api/burst", json={"unicorns": 3, "perUnicorn": 2, "poison": True},
                           headers={"Origin": "http://localhost"})  # fmt: skip

    assert (other_site.status_code, form_post.status_code, own_page.status_code) == (400, 400, 200)
    assert "not from https://example.com" in other_site.get_json()["error"]
    assert bursts.asked == [(["Unicorn-1", "Unicorn-2", "Unicorn-3"], 2, True)]
    assert own_page.get_json()["sent"] == 6


def test_a_name_rebound_to_loopback_reads_and_does_nothing():
    bursts = RecordingBursts()
    client = create_app(SimpleNamespace(bursts=bursts)).test_client()
    rebound = {"Host": "evil.example:4566", "Origin": "http://evil.example:4566"}
    assert client.get("/", headers=rebound).status_code == 403
    assert client.post("/console/api/burst", json={"unicorns": 2}, headers=rebound).status_code == 403
    assert client.get("/", headers={"Host": "localhost:4566"}).status_code == 200
    assert bursts.asked == []


def test_a_burst_is_bounded_before_anything_is_built():
    bursts = RecordingBursts()
    client = create_app(SimpleNamespace(bursts=bursts)).test_client()
    for body in ({"unicorns": 5_000_000, "perUnicorn": 0}, {"unicorns": -1}, {"unicorns": 20, "perUnicorn": 1000},
                 {"names": ["a"] * 101, "perUnicorn": 1}, {"names": "Starlight"}):  # fmt: skip
        refused = client.post("/console/api/burst", json=body)
        assert refused.status_code == 400, body
        assert "a burst is" in refused.get_json()["error"] or "names" in refused.get_json()["error"]
    assert bursts.asked == []


def test_an_action_that_fails_answers_json_with_the_reason():
    class FailingBursts:
        def produce(self, names, per_unicorn, *, poison=False):
            raise ConnectionError("the emulator went away")

    client = create_app(SimpleNamespace(bursts=FailingBursts())).test_client()
    failed = client.post("/console/api/burst", json={"unicorns": 1})
    assert failed.status_code == 500
    assert failed.get_json() == {"error": "ConnectionError: the emulator went away"}
    assert client.get("/console/api/no-such-thing").status_code == 404


def traced_run() -> list[dict]:
    """A trace held in memory: a good batch, a failed one retried, bisected and finally sent on-failure."""
    moments = iter(1_800_000_000 + step / 10 for step in range(100))
    trace = TraceWriter(None, clock=lambda: next(moments))
    common = {"function": "f", "mapping": "uuid-1", "shard": "shardId-0", "lane": 0}
    trace.invocation(**common, sequenceNumbers=["1", "2"], attempt=1, outcome="success", error=None)
    trace.invocation(**common, sequenceNumbers=["3", "4", "5", "6"], attempt=1, outcome="error", error="boom")
    trace.invocation(**common, sequenceNumbers=["3", "4", "5", "6"], attempt=2, outcome="error", error="boom")
    trace.invocation(**common, sequenceNumbers=["3", "4"], attempt=1, outcome="success", error=None)
    trace.invocation(**common, sequenceNumbers=["5", "6"], attempt=1, outcome="partial", error=None)
    trace.delivery(function="f", mapping="uuid-1", shard="shardId-0", condition="RetryAttemptsExhausted",
                   destination="arn:aws:sqs:us-east-1:123456789012:failed", batchInfo={"batchSize": 1})  # fmt: skip
    return trace.events()


def test_the_timeline_tells_batches_retries_bisects_and_on_failure_apart_per_shard():
    result = timeline(traced_run(), {"uuid-1": "Function.Stream"})

    [lane] = result["lanes"]
    assert (lane["mapping"], lane["shard"]) == ("Function.Stream", "shardId-0")
    assert [event["kind"] for event in lane["events"]] == ["batch", "error", "retry", "bisect", "bisect", "onFailure"]
    assert [event["t"] for event in lane["events"]] == [0, 100, 200, 300, 400, 500]
    assert result["durationMs"] == 500
    assert result["totals"] == {"batch": 1, "error": 1, "retry": 1, "bisect": 2, "onFailure": 1}


def test_the_report_is_one_file_that_loads_nothing_and_cannot_be_broken_by_its_data():
    snapshot = {"generatedAt": "2026-01-01T00:00:00+00:00", "fleet": {"unicorns": []},
                "errors": {"figures": "</script><script>alert(1)</script>"}}  # fmt: skip
    page = render_report(snapshot, ["line one"], timeline(traced_run(), {}))

    assert not re.search(r"""(src|href)\s*=\s*["']?(?!#)""", page), "the report refers to another file"
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", page), "the report names a URL"
    assert page.count("</script>") == page.count("<script") == 2
    data = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', page, re.S).group(1)
    assert json.loads(data)["snapshot"]["errors"]["figures"] == "</script><script>alert(1)</script>"


def test_parallel_lanes_of_one_shard_are_told_apart_when_finding_bisected_halves():
    moments = iter(1_800_000_000 + step / 10 for step in range(10))
    trace = TraceWriter(None, clock=lambda: next(moments))
    common = {"function": "f", "mapping": "uuid-1", "shard": "shardId-0"}
    trace.invocation(**common, lane=0, sequenceNumbers=["1", "9"], attempt=1, outcome="error", error="boom")
    trace.invocation(**common, lane=1, sequenceNumbers=["2", "4"], attempt=1, outcome="success", error=None)
    trace.invocation(**common, lane=0, sequenceNumbers=["1"], attempt=1, outcome="success", error=None)
    (lane,) = timeline(trace.events(), {"uuid-1": "F.Stream"})["lanes"]
    assert [event["kind"] for event in lane["events"]] == ["error", "batch", "bisect"]


def test_a_snapshot_with_nan_or_infinity_stays_json_a_browser_parses():
    text = snapshot_json({"lake": {"rows": [[1.5, float("nan")]]}, "figures": (float("inf"), -float("inf"))})
    assert json.loads(text) == {"lake": {"rows": [[1.5, None]]}, "figures": [None, None]}
    assert "NaN" not in text and "Infinity" not in text
