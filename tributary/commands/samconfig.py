"""`--config-env NAME`: parameter overrides from `samconfig.toml`, looked up as the SAM CLI looks them up.

The SAM CLI reads a command's options from `[ENV.COMMAND.parameters]`, then `[ENV.global.parameters]`;
`sam deploy --config-env prod` takes `parameter_overrides` from `[prod.deploy.parameters]`. The local
commands deploy the template like `sam deploy` does, so they read the same table; `tributary invoke`
first reads `[ENV.local_invoke.parameters]`, as `sam local invoke` does. Overrides given on the
command line win over the file's, key by key.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path

from tributary.runtime.template import TemplateError, parse_parameter_overrides

DEFAULT_CONFIG_FILE = Path("samconfig.toml")
DEPLOY_SECTIONS = ("deploy", "global")
LOCAL_INVOKE_SECTIONS = ("local_invoke", "deploy", "global")


def config_parameter_overrides(
    config_env: str, config_file: Path = DEFAULT_CONFIG_FILE, sections: Sequence[str] = DEPLOY_SECTIONS
) -> dict[str, str]:
    """`parameter_overrides` of environment `config_env`, from the first of `sections` that has them."""
    try:
        document = tomllib.loads(config_file.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise TemplateError(f"--config-env {config_env}: no {config_file} here") from error
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise TemplateError(f"--config-env {config_env}: cannot read {config_file}: {error}") from error
    environment = document.get(config_env)
    if not isinstance(environment, Mapping):
        known = sorted(key for key, value in document.items() if isinstance(value, Mapping))
        raise TemplateError(
            f"--config-env {config_env}: {config_file} has no environment {config_env!r} "
            f"(it has: {', '.join(known) or 'none'})"
        )
    for section in sections:
        parameters = (environment.get(section) or {}).get("parameters") or {}
        if "parameter_overrides" in parameters:
            return parse_parameter_overrides(_as_items(parameters["parameter_overrides"], config_env, config_file))
    return {}


def merged_overrides(
    command_line: Sequence[str], config_env: str | None, config_file: Path = DEFAULT_CONFIG_FILE,
    sections: Sequence[str] = DEPLOY_SECTIONS,
) -> dict[str, str]:
    """The config environment's overrides (if any), then `--parameter-overrides`, which win key by key."""
    from_file = config_parameter_overrides(config_env, config_file, sections) if config_env else {}
    return {**from_file, **parse_parameter_overrides(list(command_line))}


def _as_items(value: object, config_env: str, config_file: Path) -> list[str]:
    # The SAM CLI writes a string ("Key=Value Key2=Value2"); a TOML list of such strings is accepted too.
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise TemplateError(f"--config-env {config_env}: parameter_overrides in {config_file} is not a string")
