"""EMULATION of Amazon S3 event notifications to AWS Lambda (SAM `S3` events, a bucket's LambdaConfigurations).

moto stores a bucket's notification configuration but sends nothing. This lists the bucket each
poll and, for each object created or removed since (`ObjectCreated:Put`, `ObjectRemoved:Delete`)
that matches a subscription's event names and key prefix/suffix filter, sends the function S3's
event (event structure version 2.1, URL-encoded keys). S3 invokes Lambda asynchronously: the events
go to the Lambda emulation's asynchronous queue (lambda_service.py), which retries them and sends
failures to the function's OnFailure destination as Lambda does.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote_plus

import boto3

from tributary.runtime.functions import FunctionLookup, LocalFunction
from tributary.runtime.resources import Deployment
from tributary.runtime.template import ACCOUNT_ID, REGION, Template

AsyncInvoker = Callable[[LocalFunction, dict], str]  # InvocationType Event: queues, returns the request id


class S3Subscription:
    """One function subscribed to a bucket's events, with its key filter."""

    def __init__(self, function: LocalFunction, events: list[str], rules: list[dict], configuration_id: str) -> None:
        self.function = function
        self.events = events
        self.prefix = next((rule["Value"] for rule in rules if rule["Name"].lower() == "prefix"), "")
        self.suffix = next((rule["Value"] for rule in rules if rule["Name"].lower() == "suffix"), "")
        self.configuration_id = configuration_id

    def matches(self, event_name: str, key: str) -> bool:
        named = any(fnmatch.fnmatchcase(f"s3:{event_name}", pattern) for pattern in self.events)
        return named and key.startswith(self.prefix) and key.endswith(self.suffix)


class S3EventNotifications:
    """EMULATION of Amazon S3 event notifications invoking Lambda (asynchronously) for one bucket."""

    def __init__(self, bucket: str, subscriptions: list[S3Subscription], invoke_async: AsyncInvoker) -> None:
        self.name = f"s3-notifications:{bucket}"
        self.bucket = bucket
        self.subscriptions = subscriptions
        self.invoke_async = invoke_async
        self._s3 = boto3.client("s3")
        self._objects = self._list()
        self._drained = True
        self.invocations = 0  # asynchronous invocations requested (what the Lambda emulation then runs)

    def _list(self) -> dict[str, tuple[str, int]]:
        objects: dict[str, tuple[str, int]] = {}
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for item in page.get("Contents", []):
                objects[item["Key"]] = (item["ETag"].strip('"'), item["Size"])
        return objects

    def poll(self) -> bool:
        current = self._list()
        changes = [
            ("ObjectCreated:Put", key, current[key]) for key in current if current[key] != self._objects.get(key)
        ]
        changes += [("ObjectRemoved:Delete", key, self._objects[key]) for key in self._objects if key not in current]
        self._objects = current
        for event_name, key, (etag, size) in sorted(changes, key=lambda change: change[1]):
            self._notify(event_name, key, etag, size)
        self._drained = not changes
        return bool(changes)

    def _notify(self, event_name: str, key: str, etag: str, size: int) -> None:
        for subscription in self.subscriptions:
            if not subscription.matches(event_name, key):
                continue
            event = s3_event(self.bucket, event_name, key, etag, size, subscription.configuration_id)
            self.invoke_async(subscription.function, event)
            self.invocations += 1

    def __repr__(self) -> str:
        return self.name

    def is_drained(self) -> bool:
        return self._drained

    def counters(self) -> dict[str, int]:
        return {"objects": len(self._objects), "invocations": self.invocations}


def s3_event(bucket: str, event_name: str, key: str, etag: str, size: int, configuration_id: str) -> dict:
    """The event Amazon S3 sends to Lambda (event structure version 2.1); keys are URL-encoded."""
    now = dt.datetime.now(dt.UTC)
    s3_object: dict[str, Any] = {"key": quote_plus(key, safe="/"), "sequencer": f"{int(now.timestamp() * 1e6):X}"}
    if event_name.startswith("ObjectCreated"):
        s3_object.update({"size": size, "eTag": etag})
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": REGION,
                "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
                "eventName": event_name,
                "userIdentity": {"principalId": f"AWS:{ACCOUNT_ID}"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {"x-amz-request-id": uuid.uuid4().hex[:16].upper(), "x-amz-id-2": uuid.uuid4().hex},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": configuration_id,
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": ACCOUNT_ID},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    "object": s3_object,
                },
            }
        ]
    }


def subscriptions_by_bucket(
    template: Template, deployment: Deployment, functions: Mapping[str, LocalFunction], lookup: FunctionLookup
) -> dict[str, list[S3Subscription]]:
    by_bucket: dict[str, list[S3Subscription]] = {}
    for spec in template.functions():
        for event_name, event in template.resolve(spec.properties.get("Events") or {}).items():
            if event.get("Type") != "S3":
                continue
            properties = event["Properties"]
            events = properties["Events"] if isinstance(properties["Events"], list) else [properties["Events"]]
            rules = ((properties.get("Filter") or {}).get("S3Key") or {}).get("Rules") or []
            subscription = S3Subscription(functions[spec.logical_id], events, rules, f"{spec.logical_id}{event_name}")
            by_bucket.setdefault(properties["Bucket"], []).append(subscription)
    for bucket, configurations in deployment.s3_lambda_notifications.items():
        for position, configuration in enumerate(configurations):
            function = lookup(configuration["Function"])
            if function is None:
                deployment.notes.append(f"{bucket}: notification to {configuration['Function']} (not in template)")
                continue
            rules = ((configuration.get("Filter") or {}).get("S3Key") or {}).get("Rules") or []
            configuration_id = configuration.get("Id", f"notification-{position}")
            by_bucket.setdefault(bucket, []).append(
                S3Subscription(function, [configuration["Event"]], rules, configuration_id)
            )
    return by_bucket


