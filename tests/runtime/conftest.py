"""Fixtures the runtime's and the tools' tests share."""

from collections.abc import Callable

import boto3
import pytest


@pytest.fixture
def stream(aws) -> Callable[..., str]:
    """Create a Kinesis stream in the emulator and wait until it is active; returns its name."""

    def create(name: str = "wildrydes", shards: int = 2) -> str:
        kinesis = boto3.client("kinesis")
        kinesis.create_stream(StreamName=name, ShardCount=shards)
        kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.1})
        return name

    return create
