"""The console in a real browser (Chromium through Playwright), against the project's template running locally.

Records for 5 unicorns (with poison pills) go on the stream through the console's own burst action; the
page must show each unicorn at its latest position on the stream, the per-window figures DynamoDB holds,
the poison pills under their mapping with the layer's reason, and log no error; no request may leave
127.0.0.1. The report written from the same runtime must open from disk, offline, and show its charts.
"""

import json
import urllib.request

import boto3
import pytest

from tributary.console import ConsoleServer, write_report
from tributary.fleet_queries import fleet_minutes
from tributary.user_errors import UserError

pytestmark = pytest.mark.slow  # the runtime starts the whole template (about 5 s) and windows must close

UNICORNS = 5
READINGS_EACH = 10
DRAIN_TIMEOUT_S = 120
PAGE_TIMEOUT_MS = 20_000
MAPPING = '[data-mapping="StreamProcessorFunction.Wildrydes"]'


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def produced(console_runtime):
    """A burst with poison pills, put through the console's action as the page's button does, then drained."""
    runtime, console = console_runtime
    burst = {"unicorns": UNICORNS, "perUnicorn": READINGS_EACH, "poison": True}
    answer = post(f"{console.url}console/api/burst", burst)
    assert (answer["sent"], answer["poison"], answer["failed"]) == (UNICORNS * READINGS_EACH, 5, 0)
    runtime.drain(DRAIN_TIMEOUT_S)
    return answer


def latest_positions_on_the_stream(stream: str) -> dict[str, tuple[float, float]]:
    """Each unicorn's last reading on the stream that is no poison pill, read independently of the console."""
    kinesis = boto3.client("kinesis")
    latest = {}
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]  # fmt: skip
        while iterator:
            response = kinesis.get_records(ShardIterator=iterator)
            for record in response["Records"]:
                try:
                    reading = json.loads(record["Data"])
                except ValueError:
                    continue  # a malformed poison pill
                if "InputData" not in reading:
                    latest[reading["Name"]] = (reading["Latitude"], reading["Longitude"])
            iterator = response.get("NextShardIterator") if response["MillisBehindLatest"] else None
    return latest


def shown_unicorns(page) -> dict[str, tuple[float, float]]:
    markers = page.eval_on_selector_all(
        "#fleet-map g.unicorn",
        "els => els.map(e => [e.getAttribute('data-name'), +e.getAttribute('data-lat'), +e.getAttribute('data-lon')])",
    )
    return {name: (lat, lon) for name, lat, lon in markers}  # exact: the page keeps every digit JSON gave it


def shown_figures(page) -> dict[tuple[str, str], dict[str, float]]:
    rows = page.eval_on_selector_all(
        "#figures-table tr.figure",
        """rows => rows.map(r => [r.getAttribute('data-name'), r.getAttribute('data-window'),
              Object.fromEntries([...r.querySelectorAll('td')].map(td => [td.dataset.field, td.textContent]))])""",
    )
    return {(name, window): {key: float(value) for key, value in cells.items() if key not in {"name", "window"}}
            for name, window, cells in rows}  # fmt: skip


def test_the_console_shows_the_fleet_its_figures_and_the_poison_under_its_mapping(console_runtime, produced, browser):
    runtime, console = console_runtime
    page = browser.page
    page.goto(console.url)
    stream = runtime.template.physical_name("WildrydesStream")
    expected_positions = latest_positions_on_the_stream(stream)
    minutes = fleet_minutes(runtime.template.physical_name("UnicornAggregationTable"))
    assert len(expected_positions) == UNICORNS and minutes
    page.wait_for_function(
        f"""() => document.querySelectorAll('#fleet-map g.unicorn').length === {UNICORNS}
               && document.querySelectorAll('#figures-table tr.figure').length === {len(minutes)}
               && document.querySelectorAll('{MAPPING} .on-failure li').length > 0""",
        timeout=PAGE_TIMEOUT_MS,
    )

    assert shown_unicorns(page) == expected_positions
    shown = shown_figures(page)
    assert set(shown) == {(row.name, row.window_start) for row in minutes}
    for row in minutes:
        figures = row.figures
        assert shown[(row.name, row.window_start)] == pytest.approx({
            "count": figures.count, "distance": float(figures.distance),
            "minMagic": float(figures.min_magic_points), "maxMagic": float(figures.max_magic_points),
            "minHealth": float(figures.min_health_points), "maxHealth": float(figures.max_health_points),
            "parts": row.parts,
        }, abs=0.006)  # fmt: skip
    on_failure = page.locator(f"{MAPPING} .on-failure").inner_text()
    assert "RetryAttemptsExhausted" in on_failure
    assert "InputData reports an error: 'error: poison pill'" in on_failure
    assert page.locator("#fleet-map .scale-bar").count() == 1
    assert page.locator('svg[data-chart="distance"]').count() == 1
    assert "tributary-failed-records-queue: ALARM" in page.locator("#alarms").inner_text()  # 5 pills wait there
    assert "[object" not in page.locator("body").inner_text()

    browser.screenshot("console.png")
    assert browser.errors == []
    assert browser.outside == []


def test_a_burst_from_the_page_moves_the_unicorns(console_runtime, produced, browser):
    runtime, console = console_runtime
    page = browser.page
    page.goto(console.url)
    page.wait_for_selector("#fleet-map g.unicorn")
    page.fill("#burst-unicorns", str(UNICORNS))
    page.fill("#burst-per-unicorn", "2")
    page.click("#burst-button")
    page.wait_for_function("() => document.getElementById('action-result').textContent.includes('\"sent\":10')",
                           timeout=PAGE_TIMEOUT_MS)  # fmt: skip
    runtime.drain(DRAIN_TIMEOUT_S)
    expected = latest_positions_on_the_stream(runtime.template.physical_name("WildrydesStream"))
    page.wait_for_function(
        """latitudes => [...document.querySelectorAll('#fleet-map g.unicorn')]
               .every(g => latitudes[g.getAttribute('data-name')] === +g.getAttribute('data-lat'))""",
        arg={name: latitude for name, (latitude, _) in expected.items()},
        timeout=PAGE_TIMEOUT_MS,
    )
    assert shown_unicorns(page) == expected
    assert browser.errors == [] and browser.outside == []


def test_the_report_opens_offline_and_shows_its_charts(console_runtime, produced, browser, tmp_path):
    runtime, _ = console_runtime
    report = write_report(tmp_path / "report.html", runtime, ["demo summary: every record accounted for"])
    page = browser.page
    page.context.set_offline(True)
    page.goto(report.as_uri())

    assert page.locator("#summary-text").inner_text() == "demo summary: every record accounted for"
    assert page.locator("#fleet-map g.unicorn").count() == UNICORNS
    for name in ("distance", "health", "magic", "timeline"):
        assert page.locator(f'svg[data-chart="{name}"]').count() == 1, name
    assert page.locator('svg[data-chart="timeline"] circle').count() > 0
    assert "reasons: InputData reports an error" in page.locator(
        '[data-mapping="StreamProcessorFunction.Wildrydes"] .on-failure').inner_text()
    assert page.locator("#actions").is_hidden()
    assert "[object" not in page.locator("body").inner_text()

    browser.screenshot("report.png")
    assert browser.errors == []
    assert browser.outside == []


def test_a_console_port_of_its_own_serves_the_same_console_and_a_busy_one_is_refused(console_runtime):
    runtime, console = console_runtime
    with ConsoleServer(runtime, port=0) as separate:
        assert separate.url != console.url
        with urllib.request.urlopen(separate.url, timeout=10) as response:
            assert b"/console/static/console.js" in response.read()
        with urllib.request.urlopen(f"{separate.url}console/api/snapshot", timeout=10) as response:
            assert {pipeline["name"] for pipeline in json.loads(response.read())["pipelines"]} == set(runtime.mappings)
        with pytest.raises(UserError, match=f"127.0.0.1:{separate.port}: .*--console-port"):
            ConsoleServer(runtime, port=separate.port).start()
