"""CloudWatch alarm evaluation, EMF parsing and what the runtime observes for alarms (no emulator needed)."""

import io
import json
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tributary.runtime import function_output
from tributary.runtime.alarm_rules import (
    ALARM,
    INSUFFICIENT_DATA,
    OK,
    AlarmDefinitionError,
    AlarmSpec,
    alarm_spec,
    evaluate,
    period_values,
)
from tributary.runtime.alarms import AlarmBoard, last_record_arrival, summary_line, template_alarms
from tributary.runtime.emf import MetricKey, parse_emf_line
from tributary.runtime.invocation import InvocationResult
from tributary.runtime.template import Template

NOW = 1_800_000_000.0  # a multiple of 300 and of 60: the current period starts here
ERRORS = MetricKey("AWS/Lambda", "Errors", frozenset({("FunctionName", "f")}))


def spec(**changes: object) -> AlarmSpec:
    fields = {"logical_id": "A", "name": "a", "metric": ERRORS, "statistic": "Sum", "period_s": 60,
              "evaluation_periods": 1, "datapoints_to_alarm": 1, "threshold": 0.0,
              "comparison": "GreaterThanThreshold", "treat_missing_data": "notBreaching", **changes}  # fmt: skip
    return AlarmSpec(**fields)


# ------------------------------------------------------------ evaluation rules


def test_periods_are_aligned_on_the_epoch_and_the_current_one_counts():
    alarm = spec(period_s=60, evaluation_periods=3, statistic="Maximum")
    points = [(NOW - 61, 5.0), (NOW - 60, 7.0), (NOW - 1, 2.0), (NOW + 59, 4.0), (NOW - 121, 99.0)]
    # [NOW-120, NOW-60), [NOW-60, NOW), [NOW, NOW+60): NOW-121 is out of range
    assert period_values(alarm, points, NOW + 30) == [5.0, 7.0, 4.0]


@pytest.mark.parametrize(("statistic", "expected"), [("Sum", 6.0), ("Maximum", 3.0), ("Minimum", 1.0),
                                                     ("Average", 2.0), ("SampleCount", 3.0)])  # fmt: skip
def test_each_statistic(statistic, expected):
    assert period_values(spec(statistic=statistic), [(NOW, 1.0), (NOW, 2.0), (NOW, 3.0)], NOW) == [expected]


def test_m_of_n_needs_m_breaching_periods():
    alarm = spec(evaluation_periods=5, datapoints_to_alarm=3, comparison="GreaterThanOrEqualToThreshold",
                 threshold=10.0)  # fmt: skip
    two = [(NOW - 240, 10.0), (NOW - 120, 11.0), (NOW, 9.0)]
    assert evaluate(alarm, two, NOW).state == OK
    assert evaluate(alarm, [*two, (NOW - 60, 12.0)], NOW).state == ALARM
    assert evaluate(alarm, [*two, (NOW - 60, 12.0)], NOW).breaching_periods == 3


@pytest.mark.parametrize(("treatment", "state"), [("notBreaching", OK), ("breaching", ALARM),
                                                  ("missing", INSUFFICIENT_DATA), ("ignore", ALARM)])  # fmt: skip
def test_no_data_at_all_follows_treat_missing_data(treatment, state):
    assert evaluate(spec(treat_missing_data=treatment), [], NOW, previous_state=ALARM).state == state


def test_missing_periods_count_as_breaching_only_when_told():
    alarm = spec(evaluation_periods=3, datapoints_to_alarm=2)
    one_breach = [(NOW, 1.0)]
    assert evaluate(alarm, one_breach, NOW).state == OK
    assert evaluate(spec(evaluation_periods=3, datapoints_to_alarm=2, treat_missing_data="breaching"),
                    one_breach, NOW).state == ALARM  # fmt: skip
    assert evaluate(spec(evaluation_periods=3, datapoints_to_alarm=2, treat_missing_data="missing"),
                    one_breach, NOW).state == OK  # fmt: skip


@given(values=st.lists(st.one_of(st.none(), st.integers(0, 5)), min_size=1, max_size=6), data=st.data())
def test_not_breaching_alarm_iff_m_periods_breach(values, data):
    m = data.draw(st.integers(1, len(values)))
    alarm = spec(evaluation_periods=len(values), datapoints_to_alarm=m, threshold=2.0)
    first = NOW - 60 * (len(values) - 1)
    points = [(first + 60 * index, float(value)) for index, value in enumerate(values) if value is not None]
    breaching = sum(value is not None and value > 2 for value in values)
    assert evaluate(alarm, points, NOW).state == (ALARM if breaching >= m else OK)


def test_alarm_spec_reads_the_template_form_and_refuses_what_it_cannot_evaluate():
    properties = {"AlarmName": "x", "Namespace": "Tributary", "MetricName": "FailedTransient",
                  "Dimensions": [{"Name": "service", "Value": "s"}], "Statistic": "Sum", "Period": 300,
                  "EvaluationPeriods": 3, "Threshold": "0", "ComparisonOperator": "GreaterThanThreshold"}  # fmt: skip
    parsed = alarm_spec("X", properties)
    assert (parsed.datapoints_to_alarm, parsed.treat_missing_data, parsed.threshold) == (3, "missing", 0.0)
    assert parsed.metric == MetricKey("Tributary", "FailedTransient", frozenset({("service", "s")}))
    for bad in ({"Statistic": "p99"}, {"ExtendedStatistic": "p99"}, {"DatapointsToAlarm": 4},
                {"ComparisonOperator": "LessThanLowerThreshold"}, {"Period": 0}):  # fmt: skip
        with pytest.raises(AlarmDefinitionError):
            alarm_spec("X", {**properties, **bad})


# ------------------------------------------------------------ EMF

keys = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=8)
numbers = st.floats(allow_nan=False, allow_infinity=False, width=32)


@given(namespace=keys, dimensions=st.dictionaries(keys.filter(lambda k: k != "_aws"), keys, max_size=3),
       metrics=st.dictionaries(keys.map(lambda k: f"m{k}"), st.lists(numbers, min_size=1, max_size=4), min_size=1,
                               max_size=3),
       timestamp=st.integers(0, 2**45))  # fmt: skip
def test_emf_documents_parse_to_every_metric_under_each_dimension_set(namespace, dimensions, metrics, timestamp):
    metrics = {name: values for name, values in metrics.items() if name not in dimensions}
    dimension_sets = [sorted(dimensions), []]
    document = {"_aws": {"Timestamp": timestamp, "CloudWatchMetrics": [{
        "Namespace": namespace, "Dimensions": dimension_sets,
        "Metrics": [{"Name": name, "Unit": "Count"} for name in metrics]}]}, **dimensions, **metrics}  # fmt: skip
    parsed = parse_emf_line(json.dumps(document) + "\n")
    keys_per_name = [(name, kept) for name in metrics for kept in (frozenset(dimensions.items()), frozenset())]
    expected = {(MetricKey(namespace, name, kept), tuple(float(value) for value in metrics[name]))
                for name, kept in keys_per_name}  # fmt: skip
    assert {(metric.key, metric.values) for metric in parsed} == expected
    assert all(metric.timestamp_s == timestamp / 1000 and metric.unit == "Count" for metric in parsed)


def test_powertools_output_is_read():
    line = ('{"_aws":{"Timestamp":1796172884436,"CloudWatchMetrics":[{"Namespace":"T","Dimensions":[["service"]],'
            '"Metrics":[{"Name":"A","Unit":"Count"},{"Name":"B","Unit":"Milliseconds"}]}]},"service":"svc",'
            '"A":[1.0,2.0],"B":3}')  # fmt: skip
    service = frozenset({("service", "svc")})
    assert [(m.key, m.unit, m.values) for m in parse_emf_line(line)] == [
        (MetricKey("T", "A", service), "Count", (1.0, 2.0)), (MetricKey("T", "B", service), "Milliseconds", (3.0,))]


@pytest.mark.parametrize("line", [
    "plain log line", '{"message": "_aws"}', '{"_aws": {"CloudWatchMetrics": "x"}}', "{not json _aws",
    '{"_aws":{"CloudWatchMetrics":[{"Namespace":"T","Dimensions":[["service"]],"Metrics":[{"Name":"A"}]}]},"A":1}',
    '{"_aws":{"CloudWatchMetrics":[{"Namespace":"T","Metrics":[{"Name":"A"}]}]},"A":true}',
    '{"_aws":{"CloudWatchMetrics":[{"Namespace":"T","Metrics":[{"Name":"A"}]}]},"A":[]}',
    '{"_aws":{"CloudWatchMetrics":[{"Metrics":[{"Name":"A"}]}]},"A":1}',
])  # fmt: skip
def test_what_cloudwatch_would_drop_yields_no_metric(line):
    assert parse_emf_line(line) == []


# ------------------------------------------------------------ observation


def board(*specs: AlarmSpec, depth: float | None = 0.0) -> AlarmBoard:
    return AlarmBoard(specs, {}, local_functions=["f"], queue_depth=lambda queue, attribute: depth,
                      clock=lambda: NOW)  # fmt: skip


def test_invocations_errors_and_iterator_age_come_from_invocation_results():
    age = MetricKey("AWS/Lambda", "IteratorAge", ERRORS.dimensions)
    alarms = board(spec(), spec(name="age", metric=age, statistic="Maximum", threshold=60_000.0))
    records = [{"eventSource": "aws:kinesis", "kinesis": {"approximateArrivalTimestamp": NOW - seconds}}
               for seconds in (5, 90)]  # fmt: skip
    event = {"Records": records}
    alarms.observe_invocation("f", event, InvocationResult(response=None))
    assert [status.state for status in alarms.evaluate().statuses] == [OK, ALARM]
    alarms.observe_invocation("f", {}, InvocationResult(function_error="Unhandled"))
    assert alarms.evaluate().named(ALARM) == ["a", "age"]
    assert alarms.store.datapoints(MetricKey("AWS/Lambda", "Invocations", ERRORS.dimensions)) == [(NOW, 1.0)] * 2


def test_emf_lines_and_queue_depth_feed_their_alarms():
    transient = MetricKey("Tributary", "FailedTransient", frozenset({("service", "p")}))
    queue = MetricKey("AWS/SQS", "ApproximateNumberOfMessagesVisible", frozenset({("QueueName", "q")}))
    alarms = board(spec(name="transient", metric=transient), spec(name="queue", metric=queue, statistic="Maximum"),
                   depth=2.0)  # fmt: skip
    line = json.dumps({"_aws": {"Timestamp": NOW * 1000, "CloudWatchMetrics": [{"Namespace": "Tributary",
                       "Dimensions": [["service"]], "Metrics": [{"Name": "FailedTransient"}]}]},
                       "service": "p", "FailedTransient": [3]})  # fmt: skip
    alarms.observe_output_line("f", line)
    report = alarms.evaluate()
    assert report.named(ALARM) == ["transient", "queue"]
    assert summary_line(report.summary()) == "alarms: 2 in ALARM (transient, queue); 0 OK, 0 not evaluated locally"


def test_unobservable_alarms_are_listed_with_the_reason_never_ok():
    throttles = MetricKey("AWS/Lambda", "Throttles", ERRORS.dimensions)
    firehose = MetricKey("AWS/Firehose", "DeliveryToS3.DataFreshness", frozenset())
    elsewhere = MetricKey("AWS/Lambda", "Errors", frozenset({("FunctionName", "not-local")}))
    alarms = board(spec(name="t", metric=throttles), spec(name="d", metric=firehose), spec(name="e", metric=elsewhere))
    report = alarms.evaluate()
    assert report.statuses == []
    assert set(report.not_evaluated) == {"t", "d", "e"}
    assert "never throttles" in report.not_evaluated["t"] and "not run locally" in report.not_evaluated["e"]


def test_the_template_alarms_resolve_with_the_template_loader():
    specs, refused = template_alarms(Template.load("template.yaml", {"NamePrefix": "dev-"}))
    assert refused == {}
    by_name = {item.name: item for item in specs}
    transient = by_name["dev-tributary-unicorn-processor-transient-failures"]
    service = frozenset({("service", "unicorn-processor")})
    assert transient.metric == MetricKey("dev-Tributary", "FailedTransient", service)
    age = by_name["dev-tributary-unicorn-processor-iterator-age"]
    assert (age.statistic, age.evaluation_periods, age.datapoints_to_alarm) == ("Maximum", 5, 3)
    assert age.threshold == 300_000


def test_last_record_arrival_reads_stream_events_only():
    dynamodb = {"Records": [{"eventSource": "aws:dynamodb", "dynamodb": {"ApproximateCreationDateTime": 12}}]}
    assert last_record_arrival(dynamodb) == 12.0
    assert last_record_arrival({"records": [{"approximateArrivalTimestamp": 1}]}) is None  # Firehose's
    assert last_record_arrival({"Records": []}) is None
    assert last_record_arrival([1]) is None


def test_function_output_hands_on_whole_lines_per_function():
    heard: list[tuple[str, str]] = []
    stream = function_output._ThreadRoutedStream(passthrough=io.StringIO())
    function_output.listen_to_function_lines(lambda name, line: heard.append((name, line)))
    try:
        def write_as(name: str, parts: list[str]) -> None:
            with function_output.function_thread(name):
                for part in parts:
                    stream.write(part)

        write_as("f", ['{"a": ', '1}', "\n", "two\nthree"])  # "three" ends with the function's thread
        worker = threading.Thread(target=write_as, args=("g", ["x\n"]))
        worker.start()
        worker.join()
    finally:
        function_output.listen_to_function_lines(None)
    assert heard == [("f", '{"a": 1}'), ("f", "two"), ("f", "three"), ("g", "x")]
