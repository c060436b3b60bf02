"""--config-env: parameter overrides read from samconfig.toml as the SAM CLI reads them."""

from pathlib import Path

import pytest

from tributary.commands.samconfig import LOCAL_INVOKE_SECTIONS, config_parameter_overrides, merged_overrides
from tributary.runtime.template import TemplateError

PROJECT_CONFIG = Path(__file__).resolve().parents[2] / "samconfig.toml"


def test_the_projects_prod_environment_is_read_from_its_deploy_table():
    assert config_parameter_overrides("prod", PROJECT_CONFIG) == {
        "Stage": "prod", "OnFailureDestination": "s3", "ShardCount": "2", "ParallelizationFactor": "2",
    }


def test_command_line_overrides_win_key_by_key():
    merged = merged_overrides(["ShardCount=3", "NamePrefix=x-"], "prod", PROJECT_CONFIG)
    assert merged["ShardCount"] == "3" and merged["NamePrefix"] == "x-" and merged["Stage"] == "prod"


def test_local_invoke_table_comes_before_deploy(tmp_path):
    config = tmp_path / "samconfig.toml"
    config.write_text(
        'version = 0.1\n[dev.deploy.parameters]\nparameter_overrides = "Stage=dev"\n'
        '[dev.local_invoke.parameters]\nparameter_overrides = ["Stage=local", "ShardCount=1"]\n'
    )
    assert config_parameter_overrides("dev", config, LOCAL_INVOKE_SECTIONS) == {"Stage": "local", "ShardCount": "1"}
    assert config_parameter_overrides("dev", config) == {"Stage": "dev"}


def test_an_environment_without_overrides_gives_none(tmp_path):
    config = tmp_path / "samconfig.toml"
    config.write_text('version = 0.1\n[dev.global.parameters]\nstack_name = "x"\n')
    assert config_parameter_overrides("dev", config) == {}


@pytest.mark.parametrize(("content", "message"), [
    (None, "no "),
    ("version = 0.1\n[prod.deploy.parameters]\nx = 1\n", "has no environment 'dev' (it has: prod)"),
    ("not toml [", "cannot read"),
    ('[dev.deploy.parameters]\nparameter_overrides = 3\n', "is not a string"),
])
def test_errors_name_the_problem(tmp_path, content, message):
    config = tmp_path / "samconfig.toml"
    if content is not None:
        config.write_text(content)
    with pytest.raises(TemplateError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config_parameter_overrides("dev", config)
