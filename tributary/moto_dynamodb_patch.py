"""A fix to the emulator: moto 5.2.5's TransactWriteItems without copying whole tables.

Tied to moto 5.2.5, the version requirements-dev.txt pins. In moto/dynamodb/models/__init__.py,
`DynamoDBBackend.transact_write_items` deep-copies every table a transaction names before it
starts, to roll back by putting the copies in place. That costs O(items in the table) per call, so
a read model fed 100 items a transaction slows down quadratically; and in moto's threaded server a
copy taken while another request writes the same table fails (`dictionary changed size during
iteration`), and a rollback would put back a copy that lacks the other request's write.

`apply()` replaces that one method. Its checks, error codes and order of operations are moto's;
only the undo log differs: before each operation it keeps the one item it touches (a copy when an
Update changes it in place) and the length of the table's DynamoDB stream, and a rollback restores
exactly those items and drops the stream records the transaction added, as moto's whole-table copy
did. Two differences remain, both closer to DynamoDB than moto: transactions are serialized with
one lock, so two of them never interleave (a plain PutItem racing a transaction on the same item
is not isolated, as in moto); and a transaction with two operations in one action is rolled back
too, where moto leaves what it had applied.

Like tributary.moto_patches, `apply()` refuses to patch a different moto (another version, or
changed source of the method it replaces, checked by SHA-256): it warns with `MotoPatchRefused`
and leaves moto as it is, correct but slow.
"""

import copy
import threading
from typing import Any

from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    MockValidationException,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import Table

from tributary.moto_patches import replace_moto_method

TRANSACT_WRITE_ITEMS_SHA256 = "81db2cb7d94e39c90b3a2077e1f4bb41a449c558ef9b1b1e2910fdaa39978ad4"
MOTO_TRANSACT_WRITE_ITEMS = DynamoDBBackend.__dict__["transact_write_items"]
_TRANSACTIONS = threading.Lock()

Key = tuple[DynamoType, DynamoType | None]


class _UndoLog:
    """The items a transaction touched, as they were before it, and each stream's length then."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, Key], tuple[Table, Item | None]] = {}
        self.stream_lengths: dict[str, tuple[Table, int]] = {}

    def keep(self, table: Table, key_attrs: dict[str, Any], op_type: str) -> None:
        key = _item_key(table, key_attrs)
        if (table.name, key) in self.items:
            return
        current = table.get_item(*key)
        # Put and Delete replace or remove the stored Item object; only Update changes it in place.
        self.items[(table.name, key)] = (table, copy.deepcopy(current) if op_type == "Update" else current)
        if table.stream_shard is not None and table.name not in self.stream_lengths:
            self.stream_lengths[table.name] = (table, len(table.stream_shard.items))

    def roll_back(self) -> None:
        for (_, (hash_value, range_value)), (table, previous) in self.items.items():
            _restore(table, hash_value, range_value, previous)
        for table, length in self.stream_lengths.values():
            if table.stream_shard is not None and len(table.stream_shard.items) >= length:
                del table.stream_shard.items[length:]


def _item_key(table: Table, key_attrs: dict[str, Any]) -> Key:
    hash_value = DynamoType(key_attrs[table.hash_key_attr])
    range_value = DynamoType(key_attrs[table.range_key_attr]) if table.range_key_attr is not None else None
    return hash_value, range_value


def _restore(table: Table, hash_value: DynamoType, range_value: DynamoType | None, previous: Item | None) -> None:
    if range_value is not None:
        if previous is None:
            table.items[hash_value].pop(range_value, None)
        else:
            table.items[hash_value][range_value] = previous
    elif previous is None:
        table.items.pop(hash_value, None)
    else:
        table.items[hash_value] = previous


def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    """moto's transact_write_items, with an undo log of touched items instead of whole-table copies."""
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    with _TRANSACTIONS:
        undo = _UndoLog()
        try:
            errors = _run_operations(self, transact_items, undo)
        except (MultipleTransactionsException, MockValidationException, TransactWriteSingleOpException):
            undo.roll_back()
            raise
        if any(code is not None for code, _, _ in errors):
            undo.roll_back()
            raise TransactionCanceledException(errors)


def _run_operations(
    backend: DynamoDBBackend, transact_items: list[dict[str, Any]], undo: _UndoLog
) -> list[tuple[Any, Any, Any]]:
    target_items: set[tuple[str, str]] = set()
    errors: list[tuple[Any, Any, Any]] = []
    for item in transact_items:
        original_item: dict[str, Any] | None = None
        if len(list(item.keys())) > 1:
            raise TransactWriteSingleOpException
        try:
            op_type, op = next(iter(item.items()))
            if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                raise ValueError("Unsupported transaction operation")
            table_name = op["TableName"]
            table = backend.get_table(table_name)
            if op_type == "Put":
                attrs = op["Item"]
                key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = attrs[table.range_key_attr]
            else:
                key = op["Key"]
            unique = (str(table_name), str(dict(sorted(key.items()))))
            if unique in target_items:
                raise MultipleTransactionsException()
            target_items.add(unique)
            current = backend.get_item(table_name, key)
            condition_expression = op.get("ConditionExpression")
            names, values = op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
            if condition_expression is not None:
                condition_op = get_filter_expression(condition_expression, names, values)
                if not condition_op.expr(current):
                    if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                        original_item = current.to_json()["Attributes"]
                    raise ConditionalCheckFailed(item=original_item)
            if op_type != "ConditionCheck":
                undo.keep(table, key, op_type)
            _apply(backend, op_type, op, table_name, key, condition_expression, names, values)
            errors.append((None, None, None))
        except (MultipleTransactionsException, MockValidationException, TransactWriteSingleOpException):
            raise
        except ConditionalCheckFailed as error:
            errors.append(("ConditionalCheckFailed", str(error.message), original_item))
        except Exception as error:
            errors.append((type(error).__name__, str(error), original_item))
    return errors


def _apply(
    backend: DynamoDBBackend,
    op_type: str,
    op: dict[str, Any],
    table_name: str,
    key: dict[str, Any],
    condition_expression: str | None,
    names: dict[str, str] | None,
    values: dict[str, Any] | None,
) -> None:
    conditions = {
        "condition_expression": condition_expression,
        "expression_attribute_names": names,
        "expression_attribute_values": values,
    }
    # The condition was evaluated just before, under the transaction lock: a Put or Delete need not
    # parse it again (parsing is most of moto's cost per item). An Update still needs the names and
    # values for its update expression, so it gets everything, as in moto.
    if op_type == "Put":
        backend.put_item(table_name, op["Item"])
    elif op_type == "Delete":
        backend.delete_item(table_name, key)
    elif op_type == "Update":
        backend.update_item(table_name, key, update_expression=op["UpdateExpression"], **conditions)


def apply() -> bool:
    """Patch moto's TransactWriteItems; False (with a MotoPatchRefused warning) if moto is not the pinned one."""
    return replace_moto_method(DynamoDBBackend, "transact_write_items", transact_write_items,
                               TRANSACT_WRITE_ITEMS_SHA256, "transactions copy whole tables")  # fmt: skip
