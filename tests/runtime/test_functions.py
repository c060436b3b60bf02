"""In-process functions: environment, import path and module isolation, timeouts and function errors."""

import io
import os
import sys
from pathlib import Path

import pytest

from tributary.runtime.functions import load_functions, route_function_output
from tributary.runtime.template import Template

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def functions():
    return load_functions(Template.load(FIXTURES / "pipeline.yaml"))


def test_each_function_has_its_environment_globals_and_layer(functions):
    result = functions["GreeterA"].invoke({})
    assert result.function_error is None
    assert result.response == {
        "at_import": "hello",
        "now": "hello",
        "global": "from-globals",
        "stage": "dev",
        "helper": "HELLO",
        "layer": "fixture-layer",
        "function_name": functions["GreeterA"].config.name,
    }


def test_functions_sharing_code_keep_their_own_modules(functions):
    first_a = functions["GreeterA"].invoke({}).response
    b = functions["GreeterB"].invoke({}).response
    second_a = functions["GreeterA"].invoke({}).response
    assert (b["at_import"], b["helper"], b["global"]) == ("bonjour", "BONJOUR", "overridden")
    assert first_a == second_a
    assert b["function_name"] == "t-greeter-b"


def test_the_host_process_is_restored_after_an_invocation(functions):
    environment, path = dict(os.environ), list(sys.path)
    functions["GreeterB"].invoke({})
    assert dict(os.environ) == environment
    assert sys.path == path
    assert "app" not in sys.modules and "greeting_helper" not in sys.modules


def test_timeout_is_a_function_error(functions):
    result = functions["MisbehavingFunction"].invoke({"action": "sleep", "seconds": 3})
    assert result.function_error == "Unhandled"
    assert "Task timed out after" in result.error_message


def test_exception_is_a_function_error(functions):
    result = functions["MisbehavingFunction"].invoke({"action": "raise"})
    assert result.function_error == "Unhandled"
    assert result.error_message == "ValueError: asked to fail"


def test_output_json_cannot_carry_is_a_function_error(functions):
    result = functions["MisbehavingFunction"].invoke({"action": "bad_output"})
    assert result.function_error == "Unhandled"
    assert result.error_message.startswith("Runtime.MarshalError")


def test_event_that_is_not_json_is_refused_before_the_function_runs(functions):
    with pytest.raises(TypeError):
        functions["MisbehavingFunction"].invoke({"action": object()})


def test_context_counts_down_from_the_timeout(functions):
    response = functions["MisbehavingFunction"].invoke({"action": "remaining"}).response
    assert 0 < response["remaining_ms"] <= 1000
    assert response["arn"].endswith(f":function:{functions['MisbehavingFunction'].config.name}")


def test_function_output_goes_to_the_function_log_not_stdout(functions, capsys):
    log = io.StringIO()
    route_function_output(log)
    try:
        functions["MisbehavingFunction"].invoke({"action": "print"})
    finally:
        route_function_output(None)
    assert "a line from the function" in log.getvalue()
    assert "a line from the function" not in capsys.readouterr().out


def test_errors_and_invocations_are_counted(functions):
    function = functions["MisbehavingFunction"]
    before = (function.invocations, function.errors)
    function.invoke({"action": "raise"})
    function.invoke({"action": "remaining"})
    assert (function.invocations - before[0], function.errors - before[1]) == (2, 1)
