"""The redrive function's settings (its environment) and an execution's options (its input)."""

import pytest

from tributary_shared.errors import ConfigurationError
from tributary_shared.redrive.settings import RedriveSettings, RunOptions

ENVIRONMENT = {
    "REDRIVE_PIPELINES": "payment-processor=fn-pay, unicorn-processor=fn-uni,csv-loader=fn-csv",
    "QUARANTINE_ONLY_PIPELINES": "fleet-aggregator=fn-agg",
    "QUARANTINE_BUCKET": "quarantine-bucket",
    "INVOKE_IDENTITY_ARN": "arn:aws:iam::123456789012:role/redrive",
    "AWS_REGION": "eu-west-1",
    "FAILED_RECORDS_BUCKET": "",
}


def test_settings_name_each_pipelines_function():
    settings = RedriveSettings.from_env(ENVIRONMENT)
    assert settings.pipelines == {"payment-processor": "fn-pay", "unicorn-processor": "fn-uni", "csv-loader": "fn-csv"}
    assert settings.quarantine_only == {"fleet-aggregator": "fn-agg"}
    assert settings.failed_records_bucket is None  # CloudFormation writes an unset one as ""
    assert (settings.pipeline_of("fn-agg"), settings.pipeline_of("fn-pay"), settings.pipeline_of("other")) == (
        "fleet-aggregator", "payment-processor", None)  # fmt: skip


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"QUARANTINE_BUCKET": ""}, "QUARANTINE_BUCKET"),
        ({"REDRIVE_PIPELINES": "payment-processor"}, "REDRIVE_PIPELINES"),
        ({"REDRIVE_PIPELINES": "Payments=fn"}, "REDRIVE_PIPELINES"),
        ({"REDRIVE_PIPELINES": "a=fn1,a=fn2"}, "named twice"),
        ({"QUARANTINE_ONLY_PIPELINES": "payment-processor=fn-x"}, "both"),
    ],
)
def test_a_setting_that_is_missing_or_malformed_fails_the_cold_start_naming_it(change, named):
    with pytest.raises(ConfigurationError, match=named):
        RedriveSettings.from_env({**ENVIRONMENT, **change})


def test_an_empty_input_takes_every_default_and_options_round_trip():
    options = RunOptions.from_input({}, ["payment-processor"])
    assert options == RunOptions()
    given = {"pipeline": "payment-processor", "dryRun": True, "maxConcurrency": 2, "maxAttempts": 5,
             "retryDelaySeconds": 0.5, "maxMessages": 10, "maxKept": 3, "visibilityTimeoutSeconds": 30}
    assert RunOptions.from_input(given, ["payment-processor"]).as_input() == given


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ([], "must be a JSON object"),
        ({"pipelines": "x"}, "unknown option(s) pipelines"),
        ({"pipeline": "nope"}, "is not one of payment-processor"),
        ({"dryRun": "yes"}, "dryRun must be true or false"),
        ({"maxConcurrency": 11}, "maxConcurrency must be a number from 1 to 10"),
        ({"maxAttempts": 0}, "maxAttempts"),
        ({"maxAttempts": 2.5}, "whole number"),
        ({"retryDelaySeconds": -1}, "retryDelaySeconds"),
        ({"maxKept": True}, "maxKept"),
    ],
)
def test_an_input_option_out_of_bounds_is_refused_naming_it(given, problem):
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        RunOptions.from_input(given, ["payment-processor"])
