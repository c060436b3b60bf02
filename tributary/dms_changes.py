"""DMS-format change records of the `optin_status` table, as AWS DMS puts them on Kinesis.

`plan_changes(users)` builds a scripted history and the opt-out list it must leave behind:

1. a control record (DMS creating its table), ignored by the updater;
2. a full load of every user (every fifth one already opted out);
3. a row of another table, ignored;
4. the last user gets an invalid phone number: a poison record for the on-failure destination,
   in the middle of the stream, so the changes after it are re-delivered while it is retried and
   must come out right all the same;
5. opt-outs (every third user), then opt-ins (every sixth user, so some opted-out users return);
6. user 0 opts out and back in again: the second removal within 30 days is refused by the
   service, so that number stays on the list;
7. user 1 changes phone number (with a before image): the old number is opted out;
8. user 2's row is deleted: opted out.

Updates carry DMS before images; an update that leaves a row opted in with the same number (only
`lastupdate` changed) is no opt-in, so the planner, like the updater, removes nothing for it.

The partition key is the user id (DMS `primary-key` partitioning), so each user's changes stay in
order on one shard.
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tributary_shared.optin_updater.opt_out_list import is_e164

MIN_USERS = 4
MAX_USERS = 100_000
INVALID_PHONE = "206-555-0100"
BEFORE_IMAGE_FIELD = "before-image"


def phone_of(index: int) -> str:
    """A North American number in 206 (fictional range for the first hundred users)."""
    return f"+1{2065550100 + index}"


@dataclass
class ChangePlan:
    """The records to put, in order, and what the opt-out list must hold after all are applied."""

    records: list[tuple[str, bytes]] = field(default_factory=list)
    expected_opted_out: set[str] = field(default_factory=set)
    invalid_record_positions: list[int] = field(default_factory=list)
    ignored_records: int = 0


class _Planner:
    """Writes DMS records and keeps the opt-out list the service would end with, by its rules."""

    def __init__(self, schema: str, table: str, start: datetime) -> None:
        self.schema = schema
        self.table = table
        self.clock = start
        self.transaction_id = 1000
        self.plan = ChangePlan()
        self.deleted_once: set[str] = set()
        self.rows: dict[str, dict[str, Any]] = {}

    def control(self) -> None:
        metadata = self._metadata("control", "create-table", "task-id", table=self.table)
        self._emit("dms-task", {"metadata": metadata})
        self.plan.ignored_records += 1

    def other_table(self, user_id: str) -> None:
        metadata = self._metadata("data", "insert", "primary-key", table="audit_log")
        self._emit(user_id, {"data": {"userid": user_id, "action": "login"}, "metadata": metadata})
        self.plan.ignored_records += 1

    def upsert(self, operation: str, user_id: str, phone: str, optin: int) -> None:
        before = self.rows.get(user_id)
        row = {"userid": user_id, "phone": phone, "optin": optin, "lastupdate": int(self.clock.timestamp())}
        record: dict[str, Any] = {"data": row, "metadata": self._metadata("data", operation, "primary-key")}
        if operation == "update" and before is not None:
            record[BEFORE_IMAGE_FIELD] = before
        self.rows[user_id] = row
        self._emit(user_id, record)
        if before is not None and before["phone"] != phone and is_e164(before["phone"]):
            self._opt_out(before["phone"])
        if optin:
            if not (before is not None and before["optin"] and before["phone"] == phone):
                self._opt_in(phone)
        else:
            self._opt_out(phone)

    def delete(self, user_id: str) -> None:
        row = self.rows.pop(user_id)
        self._emit(user_id, {"data": row, "metadata": self._metadata("data", "delete", "primary-key")})
        self._opt_out(row["phone"])

    def invalid_phone(self, user_id: str) -> None:
        before = self.rows[user_id]
        row = {**before, "phone": INVALID_PHONE, "lastupdate": int(self.clock.timestamp())}
        self.rows[user_id] = row
        self.plan.invalid_record_positions.append(len(self.plan.records))
        record = {"data": row, "metadata": self._metadata("data", "update", "primary-key"), BEFORE_IMAGE_FIELD: before}
        self._emit(user_id, record)
        # The updater opts the number the row held before out (the new one cannot be applied).
        self._opt_out(before["phone"])

    def _opt_out(self, phone: str) -> None:
        self.plan.expected_opted_out.add(phone)

    def _opt_in(self, phone: str) -> None:
        if phone not in self.plan.expected_opted_out:
            return
        # The service lets a number be removed only once every 30 days; a run is shorter.
        if phone in self.deleted_once:
            return
        self.plan.expected_opted_out.discard(phone)
        self.deleted_once.add(phone)

    def _metadata(self, record_type: str, operation: str, key_type: str, *, table: str | None = None) -> dict:
        self.clock += timedelta(milliseconds=7)
        self.transaction_id += 1
        metadata = {
            "timestamp": self.clock.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "record-type": record_type,
            "operation": operation,
            "partition-key-type": key_type,
            "schema-name": self.schema,
            "table-name": table or self.table,
        }
        if record_type == "data" and operation != "load":
            metadata["transaction-id"] = self.transaction_id
        return metadata

    def _emit(self, partition_key: str, record: dict[str, Any]) -> None:
        self.plan.records.append((partition_key, json.dumps(record, separators=(",", ":")).encode()))


def plan_changes(
    users: int, *, schema: str = "blog_db", table: str = "optin_status", start: datetime | None = None
) -> ChangePlan:
    if not MIN_USERS <= users <= MAX_USERS:
        raise ValueError(f"users must be between {MIN_USERS} and {MAX_USERS}, got {users}")
    planner = _Planner(schema, table, start or datetime.now(UTC))
    user_ids = [f"user{index}" for index in range(users)]
    planner.control()
    for index, user_id in enumerate(user_ids):
        planner.upsert("load", user_id, phone_of(index), 0 if index % 5 == 4 else 1)
    planner.other_table(user_ids[0])
    planner.invalid_phone(user_ids[-1])
    for index in range(0, users, 3):
        planner.upsert("update", user_ids[index], phone_of(index), 0)
    for index in range(0, users, 6):
        planner.upsert("update", user_ids[index], phone_of(index), 1)
    planner.upsert("update", user_ids[0], phone_of(0), 0)
    planner.upsert("update", user_ids[0], phone_of(0), 1)
    planner.upsert("update", user_ids[1], phone_of(users + 1), 1)
    planner.delete(user_ids[2])
    return planner.plan


def generate_changes(users: int, **options: Any) -> Iterator[tuple[str, bytes]]:
    """(partition key, record bytes) for `tributary produce dms`; see `plan_changes`."""
    yield from plan_changes(users, **options).records
