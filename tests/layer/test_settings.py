"""Settings from the environment: one helper for every function, one ConfigurationError for every bad setting."""

import pytest

from tributary_shared.aggregator.settings import AggregatorSettings
from tributary_shared.errors import ConfigurationError
from tributary_shared.orders.settings import CsvLoaderSettings, FirehoseTransformSettings
from tributary_shared.schema_registry import RegistrySettings
from tributary_shared.settings import bounded_int_env, names_env, optional_env, required_env
from tributary_shared.stream_processor.settings import StreamProcessorSettings


def test_missing_settings_are_named():
    with pytest.raises(ConfigurationError, match="csv loader is not configured: set TABLE_NAME, OTHER"):
        required_env("csv loader", "TABLE_NAME", "OTHER", environ={"TABLE_NAME": ""})
    assert required_env("x", "A", environ={"A": "1", "B": "2"}) == {"A": "1"}


@pytest.mark.parametrize(
    ("raw", "message"), [("abc", "WRITE_THREADS must be an integer, got 'abc'"), ("0", "between 1 and 16, got 0")]
)
def test_integer_settings_are_bounded(raw, message):
    with pytest.raises(ConfigurationError, match=message):
        bounded_int_env("WRITE_THREADS", 4, 1, 16, environ={"WRITE_THREADS": raw})
    assert bounded_int_env("WRITE_THREADS", 4, 1, 16, environ={}) == 4


def test_optional_settings_and_lists_of_names():
    assert optional_env("SOURCE_SCHEMA", environ={"SOURCE_SCHEMA": ""}) is None  # as CloudFormation writes unset
    assert optional_env("ATTRIBUTE", "recordVersion", environ={}) == "recordVersion"
    assert names_env("x", "KEYS", environ={"KEYS": " Name , StatusTime,"}) == ("Name", "StatusTime")
    with pytest.raises(ConfigurationError, match="KEYS names nothing"):
        names_env("x", "KEYS", environ={"KEYS": " , "})


def test_every_pipeline_reads_its_settings_the_same_way():
    environ = {
        "TABLE_NAME": "T",
        "KEY_ATTRIBUTES": "Name,StatusTime",
        "SUMMARY_STREAM_NAME": "S",
        "SOURCE_TABLE_NAME": "O",
        "GLUE_REGISTRY_NAME": "tributary",
        "SCHEMA_CACHE_SIZE": "10",
        "WRITE_THREADS": "2",
    }
    registry = RegistrySettings(glue_registry_name="tributary", cache_size=10)
    keys = ("Name", "StatusTime")
    assert StreamProcessorSettings.from_env(environ) == StreamProcessorSettings("T", keys, registry=registry)
    assert AggregatorSettings.from_env(environ) == AggregatorSettings("T", "S", registry)
    assert CsvLoaderSettings.from_env(environ) == CsvLoaderSettings("T", write_threads=2)
    assert FirehoseTransformSettings.from_env(environ) == FirehoseTransformSettings("O")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"VERSION_ATTRIBUTE": "Name"}, "VERSION_ATTRIBUTE 'Name' cannot be a key attribute"),
        ({"MAX_RECORD_BYTES": "500000"}, "MAX_RECORD_BYTES must be between 1 and 409600"),
        ({"SCHEMA_CACHE_SIZE": "0"}, "SCHEMA_CACHE_SIZE must be between 1"),
        ({"TABLE_NAME": ""}, "set TABLE_NAME"),
    ],
)
def test_a_bad_setting_is_a_configuration_error_naming_it(overrides, message):
    environ = {"TABLE_NAME": "T", "KEY_ATTRIBUTES": "Name"} | overrides
    with pytest.raises(ConfigurationError, match=message):
        StreamProcessorSettings.from_env(environ)
