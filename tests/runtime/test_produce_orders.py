"""`tributary produce MODE`: one subcommand per mode, and `produce orders` dropping CSV files for the CsvLoader."""

from datetime import date
from pathlib import Path

import boto3
import pytest

from tributary.commands import main as tributary
from tributary.produce_orders import DEFAULT_BUCKET
from tributary.runtime.template import Template
from tributary.sample_orders import change_rows, csv_bytes, order_rows

REPO = Path(__file__).parents[2]
DAY = date(2020, 9, 2)


@pytest.fixture
def bucket(aws) -> str:
    boto3.client("s3").create_bucket(Bucket=DEFAULT_BUCKET)
    return DEFAULT_BUCKET


def objects(bucket: str) -> dict[str, bytes]:
    s3 = boto3.client("s3")
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {key: s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


# ------------------------------------------------------------------------------------ the subcommands


def test_produce_without_a_mode_lists_the_modes(capsys):
    assert tributary(["produce"]) == 2
    out = capsys.readouterr().out
    for mode in ("unicorns", "payments", "dms", "orders"):
        assert f"    {mode} " in out
    assert "`tributary produce MODE --help` shows the options of MODE." in out


@pytest.mark.parametrize(
    ("mode", "options"),
    [
        ("unicorns", ["--stream", "--msgs", "--rate", "--aggregate", "--name", "--unicorns", "--format", "--error",
                      "--registry", "--schema", "--compress"]),
        ("payments", ["--stream", "--msgs", "--accounts", "--format", "--schema", "--compatibility"]),
        ("dms", ["--stream", "--msgs", "--rate", "--users", "default optin-cdc"]),
        ("orders", ["--orders", "--day", "--with-changes", "--file", "--bucket",
                    f"OrdersSourceBucket as `tributary up` names it: {DEFAULT_BUCKET}"]),
    ],
)
def test_each_modes_help_shows_every_option_of_that_mode(mode, options, capsys):
    with pytest.raises(SystemExit) as exit_:
        tributary(["produce", mode, "--help"])
    assert exit_.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps at the terminal's width
    assert [option for option in options if option not in out] == []


def test_the_old_mode_option_says_what_replaced_it(capsys):
    assert tributary(["produce", "--mode", "dms", "--users", "3"]) == 2
    assert capsys.readouterr().err.startswith(
        "tributary produce: --mode is gone: the mode is a subcommand now, e.g. `tributary produce unicorns`"
    )


# ------------------------------------------------------------------------------------ produce orders


def test_the_default_bucket_is_the_templates_orders_source_bucket_as_the_runtime_names_it():
    assert Template.load(REPO / "template.yaml").physical_name("OrdersSourceBucket") == DEFAULT_BUCKET


def test_generated_orders_and_their_changes_go_under_the_day_in_load_order(bucket, capsys):
    assert tributary(["produce", "orders", "--orders", "12", "--day", str(DAY), "--with-changes"]) == 0
    rows = list(order_rows(DAY, 12))
    changes = list(change_rows(rows))
    stored = objects(bucket)
    day_key, changes_key = sorted(stored)  # the loader reads the day's file first
    assert day_key.startswith(f"orders/{DAY}/") and day_key.endswith("-1-orders.csv")
    assert changes_key.startswith(f"orders/{DAY}/") and changes_key.endswith("-2-changes.csv")
    assert stored[day_key] == csv_bytes(rows) and stored[changes_key] == csv_bytes(changes)
    assert capsys.readouterr().out.splitlines() == [
        f"put s3://{bucket}/{day_key}: {len(rows)} lines of 12 orders of {DAY}",
        f"put s3://{bucket}/{changes_key}: {len(changes)} changed or added lines",
    ]


def test_with_changes_changes_at_least_one_line_of_a_few_orders(bucket, capsys):
    assert tributary(["produce", "orders", "--orders", "2", "--day", str(DAY), "--with-changes"]) == 0
    rows = list(order_rows(DAY, 2))
    assert not list(change_rows(rows))  # the demo's share of changes draws none of so few lines
    changes_key = max(objects(bucket))
    assert objects(bucket)[changes_key] == csv_bytes(change_rows(rows[:1], share=1.0))
    assert capsys.readouterr().out.splitlines()[-1].endswith(": 2 changed or added lines")


def test_a_file_of_your_own_goes_as_it_is(bucket, tmp_path, capsys):
    path = tmp_path / "my-orders.txt"
    path.write_bytes(csv_bytes(order_rows(DAY, 3)) + b"\n")
    assert tributary(["produce", "orders", "--file", str(path), "--day", str(DAY)]) == 0
    key = f"orders/{DAY}/my-orders.txt.csv"  # the bucket's S3 event fires on .csv keys only
    assert objects(bucket) == {key: path.read_bytes()}
    lines = len(list(order_rows(DAY, 3)))
    assert capsys.readouterr().out == f"put s3://{bucket}/{key}: {lines} lines from {path}\n"


def test_a_missing_bucket_is_named_with_the_buckets_there_are(aws, capsys):
    boto3.client("s3").create_bucket(Bucket="some-other-bucket")
    assert tributary(["produce", "orders", "--orders", "1"]) == 2
    assert capsys.readouterr().err == (
        f"tributary produce: no bucket '{DEFAULT_BUCKET}' at {aws.endpoint_url}:"
        " pass --bucket with one of the buckets there: some-other-bucket\n"
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--file", "x.csv", "--with-changes"], "--with-changes goes with generated orders, not with --file"),
        (["--orders", "0"], "--orders 0: give at least 1"),
    ],
)
def test_option_mistakes_are_one_line(arguments, message, capsys):
    assert tributary(["produce", "orders", *arguments]) == 2
    assert capsys.readouterr().err == f"tributary produce: {message}\n"


def test_a_day_that_is_no_day_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_:
        tributary(["produce", "orders", "--day", "2020-13-40"])
    assert exit_.value.code == 2
    assert "'2020-13-40' is not a day like 2020-09-02" in capsys.readouterr().err
