"""The End User Messaging SMS emulation, through a real boto3 client (botocore's own serializer/parser)."""

import os
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from support import FakeClock

from tributary.runtime.emulations.sms import DELETION_INTERVAL_S, ENDPOINT_VARIABLE, SmsEmulation

NUMBER = "+12065550100"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(now=1_800_000_000.0)  # the emulation's clock is time.time


@pytest.fixture
def sms(clock: FakeClock) -> Iterator[SmsEmulation]:
    with SmsEmulation(clock=clock) as emulation:
        yield emulation


@pytest.fixture
def client(sms: SmsEmulation):
    return boto3.client("pinpoint-sms-voice-v2", region_name="us-east-1")


def error_of(call, **params) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call(**params)
    return caught.value


def test_start_points_botocores_service_specific_endpoint_variable_at_the_emulation(sms: SmsEmulation, client):
    assert os.environ[ENDPOINT_VARIABLE] == sms.endpoint_url
    assert client.meta.endpoint_url == sms.endpoint_url
    assert sms.endpoint_url.startswith("http://127.0.0.1:")


def test_stop_restores_the_endpoint_variable() -> None:
    before = os.environ.get(ENDPOINT_VARIABLE)
    emulation = SmsEmulation().start()
    emulation.stop()
    assert os.environ.get(ENDPOINT_VARIABLE) == before


def test_create_and_describe_lists(client) -> None:
    created = client.create_opt_out_list(OptOutListName="optouts")
    assert created["OptOutListArn"] == "arn:aws:sms-voice:us-east-1:123456789012:opt-out-list/optouts"
    described = client.describe_opt_out_lists(OptOutListNames=["optouts"])["OptOutLists"]
    assert [entry["OptOutListName"] for entry in described] == ["optouts"]
    by_arn = client.describe_opt_out_lists(OptOutListNames=[created["OptOutListArn"]])["OptOutLists"]
    assert by_arn[0]["OptOutListArn"] == created["OptOutListArn"]


def test_creating_a_list_twice_is_a_conflict(client) -> None:
    client.create_opt_out_list(OptOutListName="optouts")
    error = error_of(client.create_opt_out_list, OptOutListName="optouts")
    assert error.response["Error"]["Code"] == "ConflictException"
    assert error.response["Reason"] == "RESOURCE_ALREADY_EXISTS"


def test_put_is_idempotent_and_describe_lists_the_number(client, clock: FakeClock) -> None:
    client.create_opt_out_list(OptOutListName="optouts")
    first = client.put_opted_out_number(OptOutListName="optouts", OptedOutNumber=NUMBER)
    clock.now += 60
    second = client.put_opted_out_number(OptOutListName="optouts", OptedOutNumber=NUMBER)
    assert first["OptedOutTimestamp"] == second["OptedOutTimestamp"]
    numbers = client.describe_opted_out_numbers(OptOutListName="optouts")["OptedOutNumbers"]
    assert [entry["OptedOutNumber"] for entry in numbers] == [NUMBER]
    assert numbers[0]["EndUserOptedOut"] is False


@pytest.mark.parametrize("number", ["12065550100", "206-555-0100", "+0123456", "+1234567890123456", "+1"])
def test_numbers_that_are_not_e164_are_rejected(client, number: str) -> None:
    client.create_opt_out_list(OptOutListName="optouts")
    error = error_of(client.put_opted_out_number, OptOutListName="optouts", OptedOutNumber=number)
    assert error.response["Error"]["Code"] == "ValidationException"
    assert error.response["Reason"] == "FIELD_VALIDATION_FAILED"
    assert error.response["Fields"][0]["Name"] == "OptedOutNumber"


@pytest.mark.parametrize("operation", ["put_opted_out_number", "delete_opted_out_number"])
def test_a_missing_list_is_resource_not_found_of_type_opt_out_list(client, operation: str) -> None:
    error = error_of(getattr(client, operation), OptOutListName="missing", OptedOutNumber=NUMBER)
    assert error.response["Error"]["Code"] == "ResourceNotFoundException"
    assert error.response["ResourceType"] == "opt-out-list"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_deleting_a_number_not_on_the_list_is_resource_not_found_of_type_opted_out_number(client) -> None:
    client.create_opt_out_list(OptOutListName="optouts")
    error = error_of(client.delete_opted_out_number, OptOutListName="optouts", OptedOutNumber=NUMBER)
    assert error.response["Error"]["Code"] == "ResourceNotFoundException"
    assert error.response["ResourceType"] == "opted-out-number"


def test_a_number_can_be_deleted_once_every_30_days(client, clock: FakeClock) -> None:
    client.create_opt_out_list(OptOutListName="optouts")
    client.put_opted_out_number(OptOutListName="optouts", OptedOutNumber=NUMBER)
    client.delete_opted_out_number(OptOutListName="optouts", OptedOutNumber=NUMBER)
    client.put_opted_out_number(OptOutListName="optouts", OptedOutNumber=NUMBER)
    clock.now += DELETION_INTERVAL_S - 1

    refused = error_of(client.delete_opted_out_number, OptOutListName="optouts", OptedOutNumber=NUMBER)
    assert refused.response["Error"]["Code"] == "ConflictException"
    assert refused.response["Reason"] == "RESOURCE_MODIFICATION_NOT_ALLOWED"
    listed = client.describe_opted_out_numbers(OptOutListName="optouts")["OptedOutNumbers"]
    assert [entry["OptedOutNumber"] for entry in listed] == [NUMBER]

    clock.now += 1
    client.delete_opted_out_number(OptOutListName="optouts", OptedOutNumber=NUMBER)
    assert client.describe_opted_out_numbers(OptOutListName="optouts")["OptedOutNumbers"] == []


def test_describe_opted_out_numbers_filters_and_pages(client) -> None:
    client.create_opt_out_list(OptOutListName="optouts")
    numbers = [f"+1206555{index:04d}" for index in range(7)]
    for number in numbers:
        client.put_opted_out_number(OptOutListName="optouts", OptedOutNumber=number)
    chosen = client.describe_opted_out_numbers(OptOutListName="optouts", OptedOutNumbers=numbers[:2])
    assert [entry["OptedOutNumber"] for entry in chosen["OptedOutNumbers"]] == numbers[:2]
    paginator = client.get_paginator("describe_opted_out_numbers")
    pages = list(paginator.paginate(OptOutListName="optouts", PaginationConfig={"PageSize": 3}))
    assert len(pages) == 3
    assert [entry["OptedOutNumber"] for page in pages for entry in page["OptedOutNumbers"]] == numbers


def test_throttling_can_be_injected(client, sms: SmsEmulation) -> None:
    sms.create_opt_out_list("optouts")
    sms.throttle_next(1)
    throttled_client = boto3.client(
        "pinpoint-sms-voice-v2", region_name="us-east-1", config=Config(retries={"total_max_attempts": 1})
    )
    error = error_of(throttled_client.put_opted_out_number, OptOutListName="optouts", OptedOutNumber=NUMBER)
    assert error.response["Error"]["Code"] == "ThrottlingException"
    throttled_client.put_opted_out_number(OptOutListName="optouts", OptedOutNumber=NUMBER)
    assert sms.opted_out_numbers("optouts") == {NUMBER}


def test_create_opt_out_list_for_the_runtime_host_returns_ref_and_arn(sms: SmsEmulation, client) -> None:
    state = sms.create_opt_out_list("dev-tributary-optouts")
    assert state.name == "dev-tributary-optouts"
    assert state.arn.endswith(":opt-out-list/dev-tributary-optouts")
    assert client.describe_opt_out_lists()["OptOutLists"][0]["OptOutListArn"] == state.arn


def test_unknown_operations_are_refused(client) -> None:
    error = error_of(client.describe_phone_numbers)
    assert error.response["Error"]["Code"] == "UnknownOperationException"


def test_a_keyword_opt_out_is_recorded_as_the_end_users_own(client, sms: SmsEmulation) -> None:
    sms.create_opt_out_list("optouts")
    sms.opt_out_by_keyword("optouts", NUMBER)
    client.put_opted_out_number(OptOutListName="optouts", OptedOutNumber=NUMBER)  # keeps the flag
    client.put_opted_out_number(OptOutListName="optouts", OptedOutNumber="+12065550111")
    numbers = client.describe_opted_out_numbers(OptOutListName="optouts", OptedOutNumbers=[NUMBER])["OptedOutNumbers"]
    assert [(entry["OptedOutNumber"], entry["EndUserOptedOut"]) for entry in numbers] == [(NUMBER, True)]
    by_end_user = client.describe_opted_out_numbers(
        OptOutListName="optouts", Filters=[{"Name": "end-user-opted-out", "Values": ["true"]}]
    )["OptedOutNumbers"]
    assert [entry["OptedOutNumber"] for entry in by_end_user] == [NUMBER]
    assert sms.end_user_opted_out("optouts") == {NUMBER}
    assert sms.opted_out_numbers("optouts") == {NUMBER, "+12065550111"}


def test_describing_a_number_not_on_the_list_returns_no_entry(client) -> None:
    client.create_opt_out_list(OptOutListName="optouts")
    answer = client.describe_opted_out_numbers(OptOutListName="optouts", OptedOutNumbers=[NUMBER])
    assert answer["OptedOutNumbers"] == []
