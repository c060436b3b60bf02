"""template.yaml's alarms, their topic and the dashboard: every alarm reaches the topic, watches a metric that
exists, and the dashboard shows each pipeline of the stack it belongs to."""

import ast
import fnmatch
import json
from functools import cache

import pytest
from support import REPO_ROOT, RESOURCES, TEMPLATE
from template_variants import KEY_ARN, deployed, function_properties, properties, resolved_of_type

ALARM = "AWS::CloudWatch::Alarm"
ALARMS = {name: r for name, r in RESOURCES.items() if r["Type"] == ALARM}
FUNCTIONS = [name for name, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function"]
STREAM_TRIGGERED = [
    name for name in FUNCTIONS
    if any(event["Type"] == "Kinesis" for event in RESOURCES[name]["Properties"].get("Events", {}).values())
]  # fmt: skip
PIPELINE_COUNT = 5  # unicorns, payments, the fleet aggregator, the order lake, opt-ins
DASHBOARD_ROWS = PIPELINE_COUNT + 1  # and the redrive, which brings their dead-lettered records back


@cache
def layer_string_literals() -> frozenset[str]:
    """Every string constant in the shared layer's code: the metric names it publishes are among them."""
    layer = REPO_ROOT / "layers" / "shared" / "tributary_shared"
    return frozenset(
        node.value
        for path in layer.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    )


def service_names() -> dict[str, str]:
    """Each function's POWERTOOLS_SERVICE_NAME: the `service` dimension of the metrics it publishes."""
    return {
        name: RESOURCES[name]["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] for name in FUNCTIONS
    }


def alarms_on(metric: str) -> dict[str, dict]:
    return {name: alarm["Properties"] for name, alarm in ALARMS.items() if alarm["Properties"]["MetricName"] == metric}


def dimension(alarm: dict, name: str) -> object:
    (value,) = [d["Value"] for d in alarm["Dimensions"] if d["Name"] == name]
    return value


def test_every_alarm_notifies_the_topic_on_alarm_and_on_recovery():
    assert len(ALARMS) >= 26
    for name, alarm in ALARMS.items():
        props = alarm["Properties"]
        assert props["AlarmActions"] == props["OKActions"] == [{"Ref": "AlarmTopic"}], name
        assert props["TreatMissingData"] == "notBreaching", name


def test_alarm_names_follow_the_prefix_and_the_topic_accepts_exactly_them():
    template = deployed(NamePrefix="dev-")
    names = [props["AlarmName"] for props in resolved_of_type(template, ALARM).values()]
    assert len(set(names)) == len(names) and all(name.startswith("dev-tributary-") for name in names)
    statements = properties(template, "AlarmTopicPolicy")["PolicyDocument"]["Statement"]
    (publish,) = [s for s in statements if s["Effect"] == "Allow"]
    assert publish["Principal"] == {"Service": "cloudwatch.amazonaws.com"} and publish["Action"] == "sns:Publish"
    pattern = publish["Condition"]["ArnLike"]["aws:SourceArn"]
    alarm_arn = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:{}".format
    assert all(fnmatch.fnmatchcase(alarm_arn(name), pattern) for name in names)
    assert not fnmatch.fnmatchcase(alarm_arn("tributary-errors"), pattern)  # another stage's alarm


def test_every_threshold_is_a_parameter_with_a_default_or_zero():
    for name, alarm in ALARMS.items():
        threshold = alarm["Properties"]["Threshold"]
        if isinstance(threshold, dict):
            assert "Default" in TEMPLATE["Parameters"][threshold["Ref"]], name
        else:
            assert threshold == 0 and alarm["Properties"]["ComparisonOperator"] == "GreaterThanThreshold", name


@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
def test_every_function_has_errors_and_throttles_alarms(metric):
    watched = [dimension(alarm, "FunctionName") for alarm in alarms_on(metric).values()]
    assert sorted(watched, key=str) == sorted(({"Ref": name} for name in FUNCTIONS), key=str)


def test_every_stream_triggered_function_has_an_iterator_age_alarm():
    alarms = alarms_on("IteratorAge")
    assert sorted(dimension(a, "FunctionName")["Ref"] for a in alarms.values()) == sorted(STREAM_TRIGGERED)
    for alarm in alarms.values():
        assert (alarm["Namespace"], alarm["Statistic"]) == ("AWS/Lambda", "Maximum")
        assert alarm["Threshold"] == {"Ref": "IteratorAgeAlarmMilliseconds"}


def test_the_on_failure_destinations_alarm_when_anything_arrives():
    (queue,) = alarms_on("ApproximateNumberOfMessagesVisible").values()
    assert dimension(queue, "QueueName") == {"Fn::GetAtt": ["FailedRecordsQueue", "QueueName"]}
    assert (queue["Threshold"], queue["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    (bucket_alarm_name,) = alarms_on("PutRequests")
    assert ALARMS[bucket_alarm_name]["Condition"] == RESOURCES["FailedRecordsBucket"]["Condition"]
    bucket_alarm = ALARMS[bucket_alarm_name]["Properties"]
    assert dimension(bucket_alarm, "BucketName") == {"Ref": "FailedRecordsBucket"}
    filters = [c["Id"] for c in RESOURCES["FailedRecordsBucket"]["Properties"]["MetricsConfigurations"]]
    assert dimension(bucket_alarm, "FilterId") in filters


@pytest.mark.parametrize("metric", ["DeliveryToS3.DataFreshness", "FailedConversion.Records"])
def test_the_lake_delivery_stream_alarms_on_staleness_and_failed_conversions(metric):
    (alarm,) = alarms_on(metric).values()
    assert alarm["Namespace"] == "AWS/Firehose"
    assert dimension(alarm, "DeliveryStreamName") == {"Ref": "OrdersDeliveryStream"}


def test_alarms_on_the_functions_own_metrics_watch_what_the_functions_publish():
    namespace = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"]
    own = {name: a["Properties"] for name, a in ALARMS.items() if a["Properties"]["Namespace"] == namespace}
    assert len(own) >= 6
    for name, alarm in own.items():
        assert dimension(alarm, "service") in service_names().values(), name
        assert alarm["MetricName"] in layer_string_literals(), name
    transient = {dimension(alarm, "service") for alarm in own.values() if alarm["MetricName"] == "FailedTransient"}
    services = service_names()
    assert transient == {services["StreamProcessorFunction"], services["PaymentProcessorFunction"],
                         services["OptInUpdaterFunction"]}  # fmt: skip


def test_metrics_are_published_per_stage_and_locally_as_before():
    namespace = function_properties(deployed())["StreamProcessorFunction"]["Environment"]["Variables"]
    assert namespace["POWERTOOLS_METRICS_NAMESPACE"] == "Tributary"
    prefixed = function_properties(deployed(NamePrefix="dev-"))["StreamProcessorFunction"]["Environment"]["Variables"]
    assert prefixed["POWERTOOLS_METRICS_NAMESPACE"] == "dev-Tributary"


def test_the_topic_is_encrypted_with_a_key_cloudwatch_may_use_for_it():
    template = deployed()
    topic_arn = template.ref("AlarmTopic")
    assert properties(template, "AlarmTopic")["KmsMasterKeyId"] == template.ref("AlarmTopicKey")
    key = properties(template, "AlarmTopicKey")
    assert key["EnableKeyRotation"] is True
    statements = key["KeyPolicy"]["Statement"]
    (cloudwatch,) = [s for s in statements if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert sorted(cloudwatch["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert cloudwatch["Condition"] == {"StringEquals": {"kms:EncryptionContext:aws:sns:topicArn": topic_arn}}
    # With a customer-managed key the topic takes it; its key policy must then let CloudWatch use it.
    assert properties(deployed(KmsKeyArn=KEY_ARN), "AlarmTopic")["KmsMasterKeyId"] == KEY_ARN


def test_an_email_subscription_only_when_an_address_is_given():
    assert "AlarmEmailSubscription" not in deployed().resources
    subscription = properties(deployed(AlarmEmail="ops@example.com"), "AlarmEmailSubscription")
    topic = deployed().ref("AlarmTopic")
    assert subscription == {"TopicArn": topic, "Protocol": "email", "Endpoint": "ops@example.com"}


def dashboard(**parameters: str) -> tuple[list[dict], object]:
    template = deployed(**parameters)
    body = properties(template, "OperationsDashboard")["DashboardBody"]
    return json.loads(body)["widgets"], template


def metrics_of(widgets: list[dict]) -> list[list]:
    return [metric for w in widgets if w["type"] == "metric" for metric in w["properties"]["metrics"]]


@pytest.mark.parametrize("parameters", [{}, {"OnFailureDestination": "s3", "NamePrefix": "dev-"}], ids=["sqs", "s3"])
def test_the_dashboard_lists_every_alarm_of_the_stack(parameters):
    widgets, template = dashboard(**parameters)
    (alarm_widget,) = [w for w in widgets if w["type"] == "alarm"]
    expected = {template.get_att(name, "Arn") for name in resolved_of_type(template, ALARM)}
    assert set(alarm_widget["properties"]["alarms"]) == expected


def test_the_dashboard_has_a_row_per_pipeline_without_overlaps():
    widgets, _ = dashboard()
    assert len([w for w in widgets if w["type"] == "text"]) == DASHBOARD_ROWS
    cells = {
        (x, y) for w in widgets for x in range(w["x"], w["x"] + w["width"]) for y in range(w["y"], w["y"] + w["height"])
    }
    assert len(cells) == sum(w["width"] * w["height"] for w in widgets), "widgets overlap"
    assert all(w["x"] + w["width"] <= 24 for w in widgets)
    on_failure = [w for w in widgets if w["properties"].get("title") == "On-failure destination"]
    assert len(on_failure) == DASHBOARD_ROWS


def test_the_dashboard_shows_each_function_and_stream_of_the_stack():
    widgets, template = dashboard(NamePrefix="dev-")
    metrics = metrics_of(widgets)
    lambda_metrics = {(m[1], m[3]) for m in metrics if m[0] == "AWS/Lambda"}
    for function in FUNCTIONS:
        name = template.ref(function)
        assert {("Invocations", name), ("Errors", name), ("Throttles", name)} <= lambda_metrics, function
    assert {m[3] for m in metrics if m[1] == "IteratorAge"} == {template.ref(f) for f in STREAM_TRIGGERED}
    streams = {template.ref(name) for name in resolved_of_type(template, "AWS::Kinesis::Stream")}
    assert {m[3] for m in metrics if m[0] == "AWS/Kinesis"} == streams
    own = [m for m in metrics
           if m[0] not in {"AWS/Lambda", "AWS/Kinesis", "AWS/Firehose", "AWS/SQS", "AWS/S3", "AWS/States"}]
    assert {m[0] for m in own} == {"dev-Tributary"}
    assert {m[3] for m in own} == set(service_names().values())
    assert all(m[1] in layer_string_literals() for m in own)


def test_in_s3_mode_the_dashboard_shows_batches_discarded_to_the_bucket():
    widgets, template = dashboard(OnFailureDestination="s3")
    queue_name = template.get_att("FailedRecordsQueue", "QueueName")
    queue = ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", queue_name]
    bucket = ["AWS/S3", "PutRequests", "BucketName", template.ref("FailedRecordsBucket")]
    for widget in widgets:
        if widget["properties"].get("title") == "On-failure destination":
            assert [m[:4] for m in widget["properties"]["metrics"]] == [queue, bucket]
