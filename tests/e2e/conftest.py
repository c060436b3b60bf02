"""Every test here runs a pipeline end to end through the local runtime: all of them are `slow`
(`make test` runs them, `make test-fast` leaves them out)."""

from pathlib import Path

import pytest

E2E = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(item.fspath).parent == E2E:
            item.add_marker(pytest.mark.slow)
