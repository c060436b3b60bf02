"""The redrive state machine: its ASL checked three ways, and what template.yaml declares around it.

The definition is parsed by moto's ASL parser (a port of LocalStack's, which the local runtime runs)
and linted by cfn-lint's state machine schema (E3601; `sam validate --lint` does not see a
DefinitionUri file); then its graph is checked here: every transition lands on a state of its scope,
every state is reachable, and a message is deleted or moved only after the function said "settled".
"""

import copy
import json
import re
from typing import Any

import cfnlint.api
import pytest
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from support import REPO_ROOT, RESOURCES
from template_variants import deployed, function_properties, properties

MACHINE = RESOURCES["RedriveStateMachine"]["Properties"]
DEFINITION_TEXT = (REPO_ROOT / MACHINE["DefinitionUri"]).read_text()
DEFINITION = json.loads(DEFINITION_TEXT)
SUBSTITUTED = {
    "RedriveFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:tributary-redrive",
    "FailedRecordsQueueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/tributary-failed-records",
}
LAMBDA_SERVICE_ERRORS = {"Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
                         "Lambda.TooManyRequestsException"}  # fmt: skip


def substituted(text: str) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda match: SUBSTITUTED[match.group(1)], text)


def scopes(definition: dict[str, Any]) -> list[dict[str, Any]]:
    """The definition and every Map's item processor: each a StartAt and its States."""
    found = [definition]
    for state in definition["States"].values():
        if state["Type"] == "Map":
            found += scopes(state["ItemProcessor"])
    return found


def transitions(state: dict[str, Any]) -> list[str]:
    targets = [state.get("Next"), state.get("Default")]
    targets += [choice["Next"] for choice in state.get("Choices", [])]
    targets += [catch["Next"] for catch in state.get("Catch", [])]
    return [target for target in targets if target]


def lambda_tasks() -> list[dict[str, Any]]:
    return [state for scope in scopes(DEFINITION) for state in scope["States"].values()
            if state.get("Resource") == "arn:aws:states:::lambda:invoke"]  # fmt: skip


def test_moto_and_localstacks_parser_accepts_the_definition():
    AmazonStateLanguageParser.parse(substituted(DEFINITION_TEXT))


def test_cfn_lint_accepts_the_definition_and_catches_a_broken_one():
    def lint(definition: dict[str, Any]) -> list[str]:
        template = {"AWSTemplateFormatVersion": "2010-09-09", "Resources": {"Machine": {
            "Type": "AWS::StepFunctions::StateMachine",
            "Properties": {"RoleArn": "arn:aws:iam::123456789012:role/r", "Definition": definition,
                           "DefinitionSubstitutions": SUBSTITUTED}}}}  # fmt: skip
        config = cfnlint.api.ManualArgs(regions=["us-east-1"])
        return [match.rule.id for match in cfnlint.api.lint(json.dumps(template), config=config)]

    assert lint(DEFINITION) == []
    broken = copy.deepcopy(DEFINITION)
    broken["States"]["Summary"]["Type"] = "Passs"
    assert "E3601" in lint(broken)


def test_every_placeholder_is_a_declared_substitution_and_every_substitution_is_used():
    placeholders = set(re.findall(r"\$\{(\w+)\}", DEFINITION_TEXT))
    assert placeholders == set(MACHINE["DefinitionSubstitutions"]) == set(SUBSTITUTED)


@pytest.mark.parametrize("scope", scopes(DEFINITION), ids=lambda scope: scope["StartAt"])
def test_every_transition_lands_in_its_scope_and_every_state_is_reachable(scope):
    states = scope["States"]
    assert scope["StartAt"] in states
    for name, state in states.items():
        assert set(transitions(state)) <= set(states), name
        assert state.get("End") is True or state["Type"] in {"Choice", "Succeed", "Fail"} or "Next" in state, name
    reached, frontier = {scope["StartAt"]}, [scope["StartAt"]]
    while frontier:
        for target in transitions(states[frontier.pop()]):
            if target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(states)


def test_every_map_is_bounded_and_every_lambda_task_retries_the_services_errors():
    maps = [state for scope in scopes(DEFINITION) for state in scope["States"].values() if state["Type"] == "Map"]
    assert maps and all("MaxConcurrency" in state or state.get("MaxConcurrencyPath") for state in maps)
    for task in lambda_tasks():
        assert task["Parameters"]["FunctionName"] == "${RedriveFunctionArn}"
        assert any(set(retry["ErrorEquals"]) >= LAMBDA_SERVICE_ERRORS for retry in task["Retry"])


@pytest.mark.parametrize(("map_state", "settle"), [("RedriveMessages", "DeleteMessage"),
                                                   ("RedriveFailedBatches", "CopyToRedriven")])  # fmt: skip
def test_a_message_is_deleted_or_moved_only_after_the_function_says_settled(map_state, settle):
    states = DEFINITION["States"][map_state]["ItemProcessor"]["States"]
    redrive = states[DEFINITION["States"][map_state]["ItemProcessor"]["StartAt"]]
    assert redrive["Parameters"]["Payload"]["action"] == "redrive"
    assert redrive["Catch"] and all(states[catch["Next"]].get("End") for catch in redrive["Catch"])
    (choice,) = [states[name] for name in transitions(redrive) if states[name]["Type"] == "Choice"]
    entering = [rule for rule in choice["Choices"] if rule["Next"] == settle]
    assert entering == [{"Variable": "$.result.outcome.disposition", "StringEquals": "settled", "Next": settle}]
    assert [name for name, state in states.items() if settle in transitions(state)] == [
        name for name, state in states.items() if state is choice]  # fmt: skip


def test_the_state_machine_logs_every_execution_to_a_retained_encrypted_group_and_traces_it():
    template = deployed(KmsKeyArn="arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab")
    machine = properties(template, "RedriveStateMachine")
    assert machine["Type"] == "STANDARD" and machine["Tracing"] == {"Enabled": True}
    assert machine["Logging"]["Level"] == "ALL" and machine["Logging"]["IncludeExecutionData"] is True
    (destination,) = machine["Logging"]["Destinations"]
    group_arn = template.get_att("RedriveStateMachineLogGroup", "Arn")
    assert destination["CloudWatchLogsLogGroup"]["LogGroupArn"] == group_arn
    group = RESOURCES["RedriveStateMachineLogGroup"]
    assert (group["DeletionPolicy"], group["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert properties(template, "RedriveStateMachineLogGroup")["KmsKeyId"].startswith("arn:aws:kms:")
    assert machine["Role"] == template.get_att("RedriveStateMachineRole", "Arn")


def redrive_environment(template: Any) -> dict[str, str]:
    return function_properties(template)["RedriveFunction"]["Environment"]["Variables"]


def pairs(text: str) -> dict[str, str]:
    return dict(entry.split("=", 1) for entry in text.split(","))


def test_every_function_with_an_on_failure_destination_is_redriven_or_quarantined():
    template = deployed()
    functions = function_properties(template)
    def has_destination(function: dict) -> bool:
        events = (function.get("Events") or {}).values()
        return bool(function.get("EventInvokeConfig")) or any(
            (event.get("Properties") or {}).get("DestinationConfig") for event in events
        )

    with_destination = {template.ref(name) for name, function in functions.items() if has_destination(function)}
    variables = redrive_environment(template)
    replayed, quarantined = pairs(variables["REDRIVE_PIPELINES"]), pairs(variables["QUARANTINE_ONLY_PIPELINES"])
    assert set(replayed.values()) | set(quarantined.values()) == with_destination
    assert quarantined == {"fleet-aggregator": template.ref("AggregatorFunction")}


def test_the_function_may_invoke_exactly_the_pipelines_it_replays_and_read_exactly_their_streams():
    template = deployed()
    functions = function_properties(template)
    statements = properties(template, "RedriveRole")["Policies"][0]["PolicyDocument"]["Statement"]
    by_sid = {statement["Sid"]: statement for statement in statements}
    replayed = pairs(redrive_environment(template)["REDRIVE_PIPELINES"]).values()
    names = {template.ref(name): name for name in functions}
    assert sorted(by_sid["ReApplyThroughThePipelinesOwnFunctions"]["Resource"]) == sorted(
        template.get_att(names[function], "Arn") for function in replayed)  # fmt: skip
    streams = {event["Properties"]["Stream"] for name, function in functions.items()
               for event in (function.get("Events") or {}).values() if event["Type"] == "Kinesis"}  # fmt: skip
    assert set(by_sid["ReadDeadLetteredBatchesBack"]["Resource"]) == streams


@pytest.mark.parametrize(("destination", "bucket"), [("sqs", "QuarantineBucket"), ("s3", "FailedRecordsBucket")])
def test_quarantine_goes_to_the_failed_records_bucket_or_with_sqs_to_its_own(destination, bucket):
    template = deployed(OnFailureDestination=destination)
    assert ("QuarantineBucket" in template.resources) == (destination == "sqs")
    variables = redrive_environment(template)
    assert variables["QUARANTINE_BUCKET"] == template.ref(bucket)
    assert variables["FAILED_RECORDS_BUCKET"] == (template.ref(bucket) if destination == "s3" else "")
    statements = properties(template, "RedriveRole")["Policies"][0]["PolicyDocument"]["Statement"]
    (quarantine,) = [s for s in statements if s["Sid"] == "QuarantineWhatStillFails"]
    assert quarantine["Resource"] == f"{template.get_att(bucket, 'Arn')}/quarantine/*"


def test_a_schedule_only_when_the_parameter_gives_one_and_it_may_start_only_this_state_machine():
    assert "RedriveScheduleRule" not in deployed().resources
    template = deployed(RedriveSchedule="rate(1 hour)")
    rule = properties(template, "RedriveScheduleRule")
    assert (rule["ScheduleExpression"], rule["State"]) == ("rate(1 hour)", "ENABLED")
    (target,) = rule["Targets"]
    assert target["Arn"] == template.ref("RedriveStateMachine") and json.loads(target["Input"]) == {}
    (statement,) = properties(template, "RedriveScheduleRole")["Policies"][0]["PolicyDocument"]["Statement"]
    machine = template.ref("RedriveStateMachine")
    assert (statement["Action"], statement["Resource"]) == ("states:StartExecution", machine)
