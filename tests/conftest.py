"""Shared fixtures: one moto server per test session, reset between tests; real AWS is refused."""

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tributary.aws_guard import use_local_endpoint
from tributary.emulator import EmbeddedAws

# Property tests check behaviour, never speed: hypothesis's per-example deadline and its
# slow-generation health check would make them flaky on a busy 2-core machine.
settings.register_profile("tributary", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("tributary")

# Guard first, before any test module creates a client: no request may leave loopback.
use_local_endpoint("http://127.0.0.1:1")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Tributary")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "tributary-tests")


@pytest.fixture(scope="session")
def aws_server() -> Iterator[EmbeddedAws]:
    with EmbeddedAws() as server:
        yield server


@pytest.fixture
def aws(aws_server: EmbeddedAws) -> Iterator[EmbeddedAws]:
    """A clean emulated account for one test."""
    use_local_endpoint(aws_server.endpoint_url)
    aws_server.reset()
    yield aws_server
