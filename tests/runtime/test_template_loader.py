"""Template loading: short tags, parameters, conditions, intrinsics and Globals, as the runtime needs them."""

from pathlib import Path

import pytest

from tributary.runtime.template import (
    Template,
    TemplateError,
    load_yaml,
    merge_globals,
    parse_parameter_overrides,
)

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parents[2]


def template_of(text: str, overrides=None) -> Template:
    return Template(load_yaml(text), FIXTURES, overrides)


DOCUMENT = """
Parameters:
  Prefix: {Type: String, Default: "p-"}
  Stage: {Type: String, AllowedValues: [dev, prod], Default: dev}
  Zones: {Type: CommaDelimitedList, Default: "a,b,c"}
Mappings:
  Sizes:
    dev: {Shards: 1}
    prod: {Shards: 4}
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
  IsDev: !Not [!Condition IsProd]
  Both: !And [!Condition IsDev, !Equals [!Ref Prefix, "p-"]]
Resources:
  Stream:
    Type: AWS::Kinesis::Stream
    Properties:
      Name: !Sub "${Prefix}stream"
      ShardCount: !FindInMap [Sizes, !Ref Stage, Shards]
  Queue:
    Type: AWS::SQS::Queue
  ProdBucket:
    Type: AWS::S3::Bucket
    Condition: IsProd
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: !Join ["-", [!Ref Prefix, table]]
"""


def test_short_tags_become_intrinsic_functions():
    document = load_yaml("A: !Ref X\nB: !GetAtt T.StreamArn\nC: !Sub ['${a}', {a: 1}]\nD: !If [C, 1, 2]\n")
    assert document == {
        "A": {"Ref": "X"},
        "B": {"Fn::GetAtt": ["T", "StreamArn"]},
        "C": {"Fn::Sub": ["${a}", {"a": 1}]},
        "D": {"Fn::If": ["C", 1, 2]},
    }


def test_parameters_defaults_overrides_and_conditions():
    template = template_of(DOCUMENT, {"Stage": "prod"})
    assert template.parameters["Stage"] == "prod"
    assert template.parameters["Zones"] == ["a", "b", "c"]
    assert template.conditions == {"IsProd": True, "IsDev": False, "Both": False}
    assert "ProdBucket" in template.resources
    assert template.resolve(template.resources["Stream"].properties) == {"Name": "p-stream", "ShardCount": 4}


def test_resource_whose_condition_is_false_is_left_out():
    template = template_of(DOCUMENT)
    assert "ProdBucket" not in template.resources
    assert template.skipped_by_condition == ["ProdBucket"]


def test_override_outside_allowed_values_is_refused():
    with pytest.raises(TemplateError, match="Stage='test'"):
        template_of(DOCUMENT, {"Stage": "test"})


def test_override_of_an_undeclared_parameter_is_refused():
    with pytest.raises(TemplateError, match="Nope"):
        template_of(DOCUMENT, {"Nope": "1"})


def test_parameter_override_syntaxes():
    assert parse_parameter_overrides(["A=1 B=x=y", "ParameterKey=C,ParameterValue=z w"]) == {
        "A": "1",
        "B": "x=y",
        "C": "z w",
    }
    with pytest.raises(TemplateError):
        parse_parameter_overrides(["novalue"])


def test_sub_join_select_split_and_attributes():
    template = template_of(DOCUMENT)
    resolve = template.resolve
    assert resolve({"Fn::Sub": "${Stream.Arn}|${!Literal}|${AWS::Region}"}) == (
        "arn:aws:kinesis:us-east-1:123456789012:stream/p-stream|${Literal}|us-east-1"
    )
    assert resolve({"Fn::Sub": ["${x}-${Prefix}", {"x": {"Ref": "Table"}}]}) == "p--table-p-"
    assert resolve({"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]}) == "b"
    assert resolve({"Fn::GetAtt": ["Queue", "Arn"]}).startswith("arn:aws:sqs:us-east-1:123456789012:tributary-Queue-")


def test_no_value_removes_keys_and_list_items():
    template = template_of(DOCUMENT)
    value = {"a": {"Fn::If": ["IsProd", 1, {"Ref": "AWS::NoValue"}]}, "b": [1, {"Fn::If": ["IsDev", 2, 3]}]}
    assert template.resolve(value) == {"b": [1, 2]}


def test_recorded_attributes_win_over_predicted_ones():
    template = template_of(DOCUMENT)
    template.record_attributes("Queue", {"Ref": "http://127.0.0.1:5000/123456789012/q", "Arn": "arn:q"})
    assert template.resolve({"Ref": "Queue"}) == "http://127.0.0.1:5000/123456789012/q"
    assert template.resolve({"Fn::Sub": "${Queue.Arn}"}) == "arn:q"


def test_globals_merge_as_sam_merges_them():
    merged = merge_globals(
        {"Timeout": 60, "Layers": ["L1"], "Environment": {"Variables": {"A": "g", "B": "g"}}},
        {"Timeout": 5, "Layers": ["L2"], "Environment": {"Variables": {"B": "f"}}},
    )
    assert merged == {"Timeout": 5, "Layers": ["L1", "L2"], "Environment": {"Variables": {"A": "g", "B": "f"}}}


def test_fixture_functions_get_globals_and_layers():
    template = Template.load(FIXTURES / "pipeline.yaml")
    greeter_b = next(spec for spec in template.functions() if spec.logical_id == "GreeterB")
    variables = template.resolve(greeter_b.properties["Environment"]["Variables"])
    assert variables == {"GLOBAL_VAR": "overridden", "STAGE": "dev", "GREETING": "bonjour"}
    assert template.layer_directories(greeter_b.properties["Layers"]) == [FIXTURES / "layer"]
    assert template.physical_name("GreeterB") == "t-greeter-b"


def test_repository_template_resolves():
    template = Template.load(REPO / "template.yaml", {"OnFailureDestination": "s3"})
    processor = next(spec for spec in template.functions() if spec.logical_id == "StreamProcessorFunction")
    events = template.resolve(processor.properties["Events"])
    destination = events["Wildrydes"]["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]
    assert destination == template.get_att("FailedRecordsBucket", "Arn")
    assert template.resolve(processor.properties["Environment"]["Variables"])["TABLE_NAME"] == "UnicornSensorData"
