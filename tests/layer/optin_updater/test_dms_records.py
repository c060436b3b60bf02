"""Reading AWS DMS change records of the opt-in table."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tributary.dms_changes import plan_changes
from tributary_shared.errors import PoisonRecordError
from tributary_shared.optin_updater.dms_records import DmsSource, OptInChange, SkippedRecord, parse_dms_record

SOURCE = DmsSource(table="optin_status")


def dms(operation: str = "update", *, record_type: str = "data", table: str = "optin_status", **extra) -> bytes:
    document = {
        "data": {"userid": "user1", "phone": "+12065550101", "optin": 0, "lastupdate": 1593867404},
        "metadata": {
            "timestamp": "2020-07-04T12:56:44.123456Z",
            "record-type": record_type,
            "operation": operation,
            "partition-key-type": "schema-table",
            "schema-name": "blog_db",
            "table-name": table,
            "transaction-id": 12345,
        },
    }
    document.update(extra)
    return json.dumps(document).encode()


@pytest.mark.parametrize("operation", ["load", "insert", "update"])
def test_row_operations_become_changes(operation: str) -> None:
    change = parse_dms_record(dms(operation), SOURCE)
    assert change == OptInChange("user1", operation, "+12065550101", opted_in=False)


def test_optin_1_is_opted_in() -> None:
    record = dms(data={"userid": "user1", "phone": "+12065550101", "optin": 1})
    assert parse_dms_record(record, SOURCE).opted_in is True


def test_a_deleted_row_is_opted_out_whatever_its_optin() -> None:
    record = dms("delete", data={"userid": "user1", "phone": "+12065550101", "optin": 1})
    change = parse_dms_record(record, SOURCE)
    assert isinstance(change, OptInChange)
    assert change.opted_in is False
    assert change.operation == "delete"


def test_numeric_user_ids_and_string_flags_are_accepted() -> None:
    change = parse_dms_record(dms(data={"userid": 42, "phone": "+12065550101", "optin": "1"}), SOURCE)
    assert change == OptInChange("42", "update", "+12065550101", opted_in=True)


def test_control_records_are_skipped() -> None:
    record = json.dumps({"metadata": {"record-type": "control", "operation": "create-table", "table-name": "x"}})
    assert parse_dms_record(record.encode(), SOURCE) == SkippedRecord("control record")


def test_other_tables_are_skipped() -> None:
    assert parse_dms_record(dms(table="audit_log"), SOURCE) == SkippedRecord("other table")


def test_schema_is_checked_when_configured() -> None:
    assert parse_dms_record(dms(), DmsSource("optin_status", schema="other_db")) == SkippedRecord("other table")
    assert isinstance(parse_dms_record(dms(), DmsSource("optin_status", schema="blog_db")), OptInChange)


def test_before_image_with_another_phone_names_the_previous_number() -> None:
    before = {"userid": "user1", "phone": "+12065550199", "optin": 1}
    change = parse_dms_record(dms(**{"before-image": before}), SOURCE)
    assert change.previous_phone == "+12065550199"


def test_before_image_field_name_is_configurable() -> None:
    before = {"userid": "user1", "phone": "+12065550199"}
    source = DmsSource("optin_status", before_image_field="BI")
    assert parse_dms_record(dms(BI=before), source).previous_phone == "+12065550199"
    assert parse_dms_record(dms(**{"before-image": before}), source).previous_phone is None


@pytest.mark.parametrize(
    "before",
    [
        {"userid": "user1", "phone": "+12065550101"},  # same number
        {"userid": "user1"},  # ColumnFilter pk-only: no phone in the image
        None,
    ],
)
def test_no_previous_number_when_unchanged_or_unknown(before) -> None:
    extra = {} if before is None else {"before-image": before}
    assert parse_dms_record(dms(**extra), SOURCE).previous_phone is None


def opt_in_update(before: dict | None, operation: str = "update") -> OptInChange:
    row = {"userid": "user1", "phone": "+12065550101", "optin": 1, "lastupdate": 1593867999}
    extra = {} if before is None else {"before-image": before}
    change = parse_dms_record(dms(operation, data=row, **extra), SOURCE)
    assert isinstance(change, OptInChange) and change.opted_in
    return change


@pytest.mark.parametrize("optin", [1, "1", True])
def test_an_update_that_leaves_the_same_number_opted_in_is_no_opt_in(optin) -> None:
    before = {"userid": "user1", "phone": "+12065550101", "optin": optin, "lastupdate": 1593867404}
    assert opt_in_update(before).already_opted_in


@pytest.mark.parametrize(
    "before",
    [
        {"userid": "user1", "phone": "+12065550101", "optin": 0},  # 0 → 1: a real opt-in
        {"userid": "user1", "phone": "+12065550199", "optin": 1},  # a new number is opted in
        {"userid": "user1", "optin": 1},  # no phone in the image: cannot tell
        {"userid": "user1", "phone": "+12065550101"},  # no optin in the image: cannot tell
        None,  # no before image (BeforeImageSettings off)
    ],
)
def test_an_opt_in_counts_as_a_change_unless_the_before_image_proves_otherwise(before) -> None:
    assert not opt_in_update(before).already_opted_in


@pytest.mark.parametrize("operation", ["load", "insert"])
def test_loads_and_inserts_carry_no_before_image_so_their_opt_ins_are_applied(operation: str) -> None:
    before = {"userid": "user1", "phone": "+12065550101", "optin": 1}
    assert not opt_in_update(before, operation).already_opted_in


def test_a_change_names_every_number_it_acts_on() -> None:
    before = {"userid": "user1", "phone": "+12065550199", "optin": 1}
    assert opt_in_update(before).numbers == ("+12065550199", "+12065550101")
    assert OptInChange("user1", "insert", None, opted_in=False).numbers == ()


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (b"\xff\xfe", "not UTF-8 JSON"),  # a UTF-16 byte-order mark: JSON here is UTF-8
        (b"\x7b\xff\x7d", "not UTF-8 JSON"),
        (b"[1, 2]", "JSON list, expected an object"),
        (b'{"data": {}}', "no metadata"),
        (dms("truncate"), "unknown operation"),
        (dms(data=None), "no data object"),
        (dms(data={"phone": "+12065550101", "optin": 0}), "userid"),
        (dms(data={"userid": "u", "phone": "+12065550101", "optin": 2}), "optin must be 0 or 1"),
        (dms(data={"userid": "u", "phone": ["+1"], "optin": 0}), "not a phone number"),
        (b"{" + b" " * 70_000 + b"}", "more than"),
    ],
)
def test_unreadable_rows_are_poison(record: bytes, message: str) -> None:
    with pytest.raises(PoisonRecordError, match=message):
        parse_dms_record(record, SOURCE)


def hostile_row(**fields: object) -> dict:
    return {"userid": "u", "phone": "+12065550101", "optin": 0} | fields


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (b'{"metadata":' + b"[" * 10_000 + b"]" * 10_000 + b"}", "nested too deeply"),
        (b'{"data":{"userid":' + b"1" * 5000 + b'},"metadata":{}}', "not valid JSON: Exceeds the limit"),
        (b'{"metadata":{"record-type":"data","table-name":"optin_status","operation":{"a":1}}}', "unknown operation"),
        (dms([]), r"unknown operation \[\]"),
        (dms(record_type={}), "record-type is a dict, not a string"),
        (dms(data=hostile_row(userid=[])), "no usable userid: \\[\\]"),
        (dms(data=hostile_row(userid="\ud800")), "lone UTF-16 surrogate"),
        (dms(data=hostile_row(phone="+1\udfff")), "lone UTF-16 surrogate"),
        (dms(data=hostile_row(optin=10**4000)), "optin must be 0 or 1, got 1000000000"),
        (dms(data=hostile_row(optin=float("nan"))), "NaN is not a number"),
        (dms(**{"before-image": hostile_row(phone={"x": 1})}), "before-image phone is a dict"),
    ],
)
def test_hostile_records_are_poison_with_a_short_reason_naming_the_problem(record: bytes, message: str) -> None:
    with pytest.raises(PoisonRecordError, match=message) as poison:
        parse_dms_record(record, SOURCE)
    assert len(poison.value.reason) < 200


@given(
    user_id=st.text(min_size=1, max_size=20),
    phone=st.from_regex(r"\+[1-9][0-9]{1,14}", fullmatch=True),
    optin=st.sampled_from([0, 1]),
    operation=st.sampled_from(["load", "insert", "update", "delete"]),
)
def test_any_well_formed_row_round_trips(user_id: str, phone: str, optin: int, operation: str) -> None:
    record = dms(operation, data={"userid": user_id, "phone": phone, "optin": optin})
    change = parse_dms_record(record, SOURCE)
    assert change == OptInChange(user_id, operation, phone, opted_in=bool(optin) and operation != "delete")


def test_generated_changes_parse_and_only_the_planned_invalid_phone_is_not_e164() -> None:
    plan = plan_changes(12)
    parsed = [parse_dms_record(data, SOURCE) for _, data in plan.records]
    skipped = [entry for entry in parsed if isinstance(entry, SkippedRecord)]
    assert len(skipped) == plan.ignored_records == 2
    not_e164 = [
        position
        for position, entry in enumerate(parsed)
        if isinstance(entry, OptInChange) and not (entry.phone or "").startswith("+")
    ]
    assert not_e164 == plan.invalid_record_positions
    (invalid,) = not_e164
    assert 0 < invalid < len(plan.records) - 1  # mid-stream: later changes are redelivered with it
    partition_keys = {key for key, _ in plan.records}
    assert {f"user{index}" for index in range(12)} <= partition_keys
