"""Settings from the environment: the one way every function reads its configuration.

Each pipeline has one frozen settings dataclass whose `from_env(environ=None)` reads its variables
through these helpers; a handler builds it once, at cold start, and passes it in. Anything missing
or invalid is a `ConfigurationError` naming the variable: the deployment's fault, never a record's.
An empty variable counts as unset, as CloudFormation writes an unset parameter as "".
"""

import os
from collections.abc import Mapping
from typing import overload

from tributary_shared.errors import ConfigurationError

Environ = Mapping[str, str]


def _variables(environ: Environ | None) -> Environ:
    return os.environ if environ is None else environ


def required_env(component: str, *names: str, environ: Environ | None = None) -> dict[str, str]:
    """The named settings; a missing one fails the cold start with a message naming it."""
    env = _variables(environ)
    missing = [name for name in names if not env.get(name)]
    if missing:
        raise ConfigurationError(f"{component} is not configured: set {', '.join(missing)}")
    return {name: env[name] for name in names}


@overload
def optional_env(name: str, default: str, environ: Environ | None = None) -> str: ...
@overload
def optional_env(name: str, default: None = None, environ: Environ | None = None) -> str | None: ...
def optional_env(name: str, default: str | None = None, environ: Environ | None = None) -> str | None:
    """A setting that may be left unset (or empty): `default` then."""
    return _variables(environ).get(name) or default


def bounded_int_env(name: str, default: int, low: int, high: int, environ: Environ | None = None) -> int:
    """An integer setting within [low, high]; anything else fails the cold start naming the setting."""
    raw = _variables(environ).get(name) or str(default)
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigurationError(f"{name} must be between {low} and {high}, got {value}")
    return value


def names_env(component: str, name: str, environ: Environ | None = None) -> tuple[str, ...]:
    """A required comma-separated list of names (blanks around them dropped); empty fails naming it."""
    raw = required_env(component, name, environ=environ)[name]
    names = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not names:
        raise ConfigurationError(f"{component} is not configured: {name} names nothing ({raw!r})")
    return names
