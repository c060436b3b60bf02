"""What the benchmarks share: the embedded AWS, medians over interleaved rounds, subprocess timing."""

import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3

from tributary.emulator import EmbeddedAws

REPO_ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def embedded_aws() -> Iterator[EmbeddedAws]:
    with EmbeddedAws() as aws:
        yield aws


def interleaved_medians(contenders: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds per contender, running them in turn each round so machine noise hits all alike."""
    timings: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            started = time.perf_counter()
            run()
            timings[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in timings.items()}


def python_startup_seconds(code: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    # What the code prints (a handler's logs and warnings) is not the benchmark's output, unless it fails.
    run = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if run.returncode:
        raise RuntimeError(f"{code!r} failed:\n{run.stderr[-2000:]}")
    return elapsed


def create_string_keyed_table(name: str, hash_key: str, range_key: str) -> None:
    """An on-demand table in the embedded AWS with two string key attributes, as the benchmarks use."""
    boto3.client("dynamodb").create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"} for key in (hash_key, range_key)],
        KeySchema=[{"AttributeName": hash_key, "KeyType": "HASH"}, {"AttributeName": range_key, "KeyType": "RANGE"}],
    )
