"""moto's server, with each DynamoDB request applied atomically, transactions that cost what
they touch, and memory that stays bounded under sustained traffic.

Real DynamoDB applies every request (a conditional put, a transaction) atomically. moto's
threaded server does not: conditional writes check then write without a lock, so concurrent
requests can overwrite each other inside the emulator. Out of the box moto also grows without
bound: every TransactWriteItems deep-copies each table it names (items and stream history) to
roll back on failure, its model registry keeps every model object ever built (so those copies,
and every item copied for a query result, are never freed), and a table's stream shard and
the streams backend's shard iterators are kept forever. The patches below, all applied before
the server starts, keep DynamoDB's semantics and remove the growth:

- serialise_dynamodb: DynamoDB and DynamoDB Streams requests run one at a time under one lock,
  so every request is atomic and nothing else sees a transaction half applied. Other services
  stay concurrent (SQS long polls must not block the table).
- answers_in_plain_json: the data-plane answers (items, pages, stream records) are written with
  json.dumps instead of moto's serialiser, which walks botocore's output shape value by value
  and was most of a large Query's or GetRecords' time under the lock (EMULATOR_MOTO_SERIALISER=1
  restores moto's, which a test compares them with).
- snapshot_only_touched_items: TransactWriteItems no longer deep-copies whole tables. While the
  lock is held it copies only the items the transaction names (or notes that they are absent)
  and where each touched stream ends; on any failure it puts those items back exactly (removes
  the ones it created, restores the ones it changed or deleted; GSIs are computed from the items,
  so they follow) and cuts the failed transaction's records off the stream (no reader can have
  seen them, so their sequence numbers are given again to the next writes). moto's own
  whole-table copy is turned into a no-op for the duration (its restore then reassigns the live
  table to itself), so the rest of moto's transaction logic, conditions included, is unchanged.
  This also rolls back the one failure moto left half applied (an action naming two operations).
- one_stream_record_per_update: moto's UpdateItem on an absent item first puts the bare key and
  then updates it, streaming two INSERT records; the first (key only) is dropped so every write
  streams exactly one record, as DynamoDB does.
- queries_read_their_partition: a table query bisects its partition's sorted sort keys to the
  key condition's range, and an index query starts from the items filed under its index hash
  value, instead of moto's sorted list of every item of the table: a query costs what it reads.
  Those lookups are built by the first query of a partition or index and kept current by every
  write (put, delete, update in place, a failed transaction's restore).
- queue_attributes_cost_what_they_read: a queue's attributes are computed when read, so a send
  no longer counts every message of the queue and a receive no longer counts them three times
  per message it returns (a backlog made each receive cost O(n^2), and consumers fell further
  behind the longer they were behind).
- queues_forget_expired_messages: a receive drops the queue's messages older than its
  MessageRetentionPeriod, as SQS does (moto kept them forever).
- batch_sends_keep_system_attributes: SendMessageBatch keeps each entry's
  MessageSystemAttributes (the AWSTraceHeader), as SendMessage does.
- update_expressions_parsed_once, event_paths_parsed_once, services_listed_once: what moto
  rebuilt for every request and is the same every time (an UpdateExpression's parsed tree, an
  EventBridge target's input paths, the list of moto's services) is built once.
- quiet_request_log: werkzeug's line per request is not written (EMULATOR_REQUEST_LOG=1 keeps
  it); errors still are.
- untrack_dynamodb_models: moto's BaseModel.__new__ appends every instance to its class's
  `instances_tracked` list (for /moto-api/data.json) and only /moto-api/reset clears them. For
  the DynamoDB and DynamoDB Streams models (tables, items, stream records, shards, iterators) that
  list pins every item copy and iterator ever made, so those classes are no longer tracked;
  every other service's models (the SES and SNS ones tests read) are still listed in data.json,
  and reset works as before.
- bounded_streams: a stream shard drops records older than 24 hours (DynamoDB's retention) and
  records that every open reader has passed, keeping at least the newest STREAM_TAIL (1000)
  records for readers that arrive later with TRIM_HORIZON. An open reader is a shard iterator
  issued in the last 15 minutes (DynamoDB's iterator lifetime) that has not been used yet, or
  that was used but whose successor has not been (so a GetRecords retried after a lost response
  still reads the same records). A record keeps its sequence number, DescribeStream still reports
  the shard's first one, and a read from below the oldest kept record starts at that record
  (where DynamoDB would answer TrimmedDataAccessException): only a reader idle for longer than
  15 minutes, while more than STREAM_TAIL newer records arrived, can miss records. Used iterators
  are forgotten 15 minutes after they were issued, unused ones after 24 hours; a forgotten one
  answers ExpiredIteratorException (moto answered an unknown iterator with a 500).
- read_streams_from_the_live_table: a shard iterator follows the table's current shard object if
  that shard belongs to the same stream (it once had to, when a failed transaction replaced the
  shard with its copy; now nothing does, and a recreated table's new stream is not followed).

STREAM_TAIL and the retention can be set with EMULATOR_STREAM_TAIL and
EMULATOR_STREAM_RETENTION_SECONDS (tests use small values to see trimming quickly).

Usage: python infra/emulator.py [-H 127.0.0.1] [-p PORT]
"""

import argparse
import base64
import bisect
import calendar
import copy
import datetime
import io
import json
import os
import threading
import time
import weakref

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.dynamodb.models.dynamo_type import DynamoType
from werkzeug.serving import run_simple

_DYNAMODB = threading.Lock()

STREAM_TAIL = int(os.environ.get("EMULATOR_STREAM_TAIL", "1000"))
STREAM_RETENTION = float(os.environ.get("EMULATOR_STREAM_RETENTION_SECONDS", str(24 * 3600)))
ITERATOR_LIFETIME = 15 * 60.0  # DynamoDB's: an iterator pins records this long at most
UNUSED_ITERATOR_LIFETIME = 24 * 3600.0  # after this an iterator never used is forgotten too

# Per thread: >0 while a transaction or an update runs, so that the stream is not trimmed
# while records may still be taken back or merged.
_local = threading.local()
# shard -> the iterators issued on it (weakly: the streams backend owns them)
_readers: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class _deferred_trim:
    def __enter__(self):
        _local.depth = getattr(_local, "depth", 0) + 1

    def __exit__(self, *exc):
        _local.depth -= 1
        return False


def _trim_deferred() -> bool:
    return getattr(_local, "depth", 0) > 0


def _next_sequence_number(shard) -> int:
    return shard.starting_sequence_number + len(shard.items)


def _record_time(record) -> datetime.datetime:
    return record.record["dynamodb"]["ApproximateCreationDateTime"]


def _pins(shard, now: float):
    for it in list(_readers.get(shard, ())):
        if it.stream_shard is not shard or now - it._emulator_issued >= ITERATOR_LIFETIME:
            continue
        if not getattr(it, "_emulator_released", False):
            yield it.sequence_number


def trim_stream(shard) -> None:
    """Drop what no reader needs any more; keep sequence numbers as they were."""
    from moto.core.utils import utcnow

    items = shard.items
    count = len(items)
    if count == 0:
        return
    drop = 0
    cutoff = utcnow() - datetime.timedelta(seconds=STREAM_RETENTION)
    while drop < count and _record_time(items[drop]) <= cutoff:
        drop += 1
    if count - drop > STREAM_TAIL and count >= getattr(shard, "_emulator_trim_at", 0):
        floor = count - STREAM_TAIL
        for position in _pins(shard, time.monotonic()):
            floor = min(floor, position - shard.starting_sequence_number)
        drop = max(drop, floor)
        shard._emulator_trim_at = count - drop + max(STREAM_TAIL // 2, 16)
    if drop > 0:
        if not hasattr(shard, "_emulator_first_sequence_number"):
            shard._emulator_first_sequence_number = shard.starting_sequence_number
        del items[:drop]
        shard.starting_sequence_number += drop


def snapshot_only_touched_items():
    from moto.dynamodb import models as dynamodb
    from moto.dynamodb.models.table import Table

    original = dynamodb.DynamoDBBackend.transact_write_items

    class CopyExceptLiveTables:
        """moto.dynamodb.models' `copy`, except that inside transact_write_items a table is
        'copied' as itself: the backup moto takes is the live table and its restore a no-op."""

        def __getattr__(self, name):
            return getattr(copy, name)

        @staticmethod
        def deepcopy(value, memo=None):
            if isinstance(value, Table) and getattr(_local, "in_transaction", False):
                return value
            return copy.deepcopy(value, memo)

    dynamodb.copy = CopyExceptLiveTables()

    def snapshot(backend, transact_items):
        touched = {}  # (id(table), hash, range) -> (table, hash, range, had_bucket, copy or None)
        streams = {}  # id(shard) -> (shard, next sequence number)
        for action in transact_items:
            try:
                _, op = next(iter(action.items()))
                table = backend.get_table(op["TableName"])
                key = op["Key"] if "Key" in op else op["Item"]
                hash_key, range_key = backend.get_keys_value(table, key)
            except Exception:
                continue  # moto cannot write what it cannot address either
            if table.stream_shard is not None:
                shard = table.stream_shard
                streams.setdefault(id(shard), (shard, _next_sequence_number(shard)))
            slot = (id(table), hash_key, range_key)
            if slot in touched:
                continue
            if table.range_key_attr is not None:
                bucket = table.items.get(hash_key)
                had_bucket = bucket is not None
                item = bucket.get(range_key) if bucket is not None else None
            else:
                had_bucket = hash_key in table.items
                item = table.items.get(hash_key)
            touched[slot] = (table, hash_key, range_key, had_bucket, copy.deepcopy(item))
        return list(touched.values()), list(streams.values())

    def restore(touched, streams):
        for table, hash_key, range_key, had_bucket, item in touched:
            if table.range_key_attr is not None:
                if item is not None:
                    table.items[hash_key][range_key] = item
                else:
                    bucket = table.items.get(hash_key)
                    if bucket is not None:
                        bucket.pop(range_key, None)
                        if not bucket and not had_bucket:
                            del table.items[hash_key]
            elif item is not None:
                table.items[hash_key] = item
            else:
                table.items.pop(hash_key, None)
            _written(table, hash_key, range_key, item is not None)
        for shard, next_sequence_number in streams:
            del shard.items[max(0, next_sequence_number - shard.starting_sequence_number) :]

    def transact_write_items(self, transact_items):
        touched, streams = snapshot(self, transact_items)
        _local.in_transaction = True
        try:
            with _deferred_trim():
                original(self, transact_items)
        except BaseException:
            restore(touched, streams)
            raise
        finally:
            _local.in_transaction = False
            for shard, _ in streams:
                trim_stream(shard)

    dynamodb.DynamoDBBackend.transact_write_items = transact_write_items


def one_stream_record_per_update():
    from moto.dynamodb import models as dynamodb

    original = dynamodb.DynamoDBBackend.update_item

    def update_item(self, table_name, *args, **kwargs):
        try:
            shard = self.get_table(table_name).stream_shard
        except Exception:
            shard = None
        if shard is None:
            return original(self, table_name, *args, **kwargs)
        start, count = shard.starting_sequence_number, len(shard.items)
        with _deferred_trim():
            result = original(self, table_name, *args, **kwargs)
        if shard.starting_sequence_number == start and len(shard.items) == count + 2:
            bare, full = shard.items[-2], shard.items[-1]
            if bare.record["eventName"] == "INSERT" and full.record["eventName"] == "INSERT":
                full.record["dynamodb"]["SequenceNumber"] = bare.record["dynamodb"]["SequenceNumber"]
                del shard.items[-2]
        if not _trim_deferred():
            trim_stream(shard)
        return result

    dynamodb.DynamoDBBackend.update_item = update_item


def untrack_dynamodb_models():
    from moto.core.common_models import BaseModel
    from moto.core.model_instances import model_data

    import moto.dynamodbstreams.models  # noqa: F401  (defines the DynamoDB models too)

    untracked = ("moto.dynamodb.", "moto.dynamodbstreams.")
    tracked_new = BaseModel.__new__
    decided: dict = {}

    def __new__(cls, *args, **kwargs):
        skip = decided.get(cls)
        if skip is None:
            skip = decided[cls] = cls.__module__.startswith(untracked)
        if skip:
            return object.__new__(cls)
        return tracked_new(cls, *args, **kwargs)

    BaseModel.__new__ = staticmethod(__new__)
    for service in ("dynamodb", "dynamodbstreams"):
        for model in model_data.get(service, {}).values():
            model.instances_tracked = []


def bounded_streams():
    from moto.core.exceptions import JsonRESTError
    from moto.dynamodb.models.table import StreamShard
    from moto.dynamodbstreams import models as streams

    shard_add, shard_get, shard_to_json = StreamShard.add, StreamShard.get, StreamShard.to_json

    def add(self, old, new):
        start, count = self.starting_sequence_number, len(self.items)
        shard_add(self, old, new)
        if len(self.items) < count + 1:
            # a Lambda event source mapping took the records: numbering goes on after them
            self.starting_sequence_number = start + count + 1 - len(self.items)
        if not _trim_deferred():
            trim_stream(self)

    def get(self, start, quantity):
        return shard_get(self, max(start, self.starting_sequence_number), quantity)

    def to_json(self):
        result = shard_to_json(self)
        first = getattr(self, "_emulator_first_sequence_number", self.starting_sequence_number)
        result["SequenceNumberRange"]["StartingSequenceNumber"] = str(first)
        return result

    StreamShard.add, StreamShard.get, StreamShard.to_json = add, get, to_json

    iterator_init, iterator_get = streams.ShardIterator.__init__, streams.ShardIterator.get

    def forget_expired(backend, now):
        if now < getattr(backend, "_emulator_purge_at", 0.0):
            return
        backend._emulator_purge_at = now + 30.0
        for arn, it in list(backend.shard_iterators.items()):
            age = now - it._emulator_issued
            used = getattr(it, "_emulator_used", False)
            if age >= (ITERATOR_LIFETIME if used else UNUSED_ITERATOR_LIFETIME):
                del backend.shard_iterators[arn]

    def __init__(self, streams_backend, stream_shard, *args, **kwargs):
        iterator_init(self, streams_backend, stream_shard, *args, **kwargs)
        self._emulator_issued = time.monotonic()
        _readers.setdefault(stream_shard, weakref.WeakSet()).add(self)
        forget_expired(streams_backend, self._emulator_issued)

    def iterator_read(self, limit=1000):
        parent = getattr(self, "_emulator_parent", None)
        parent = parent() if parent is not None else None
        if parent is not None:
            parent._emulator_released = True  # the reader got its answer: it moved on
        self._emulator_used = True
        result = iterator_get(self, limit)
        successor = self.streams_backend.shard_iterators.get(result["NextShardIterator"])
        if successor is not None:
            successor._emulator_parent = weakref.ref(self)
        return result

    streams.ShardIterator.__init__ = __init__
    streams.ShardIterator.get = iterator_read

    backend_get_records = streams.DynamoDBStreamsBackend.get_records

    def get_records(self, iterator_arn, limit):
        if iterator_arn not in self.shard_iterators:
            raise JsonRESTError(
                "ExpiredIteratorException", "The shard iterator has expired or is unknown."
            )
        return backend_get_records(self, iterator_arn, limit)

    streams.DynamoDBStreamsBackend.get_records = get_records


def read_streams_from_the_live_table():
    """Apply after bounded_streams: wraps the iterator read it installs."""
    from moto.dynamodbstreams import models as streams

    original = streams.ShardIterator.get

    def get(self, limit=1000):
        table = self.streams_backend.dynamodb.tables.get(self.stream_shard.table.name)
        current = table.stream_shard if table is not None else None
        if (
            current is not None
            and current is not self.stream_shard
            and table.latest_stream_label == self.stream_shard.table.latest_stream_label
            and current.created_on == self.stream_shard.created_on
        ):
            self.stream_shard = current
            _readers.setdefault(current, weakref.WeakSet()).add(self)
        return original(self, limit)

    streams.ShardIterator.get = get


_RANGE_TESTS = {
    "EQ": lambda v, a: v == a[0],
    "=": lambda v, a: v == a[0],
    "LT": lambda v, a: v < a[0],
    "<": lambda v, a: v < a[0],
    "LE": lambda v, a: v <= a[0],
    "<=": lambda v, a: v <= a[0],
    "GT": lambda v, a: v > a[0],
    ">": lambda v, a: v > a[0],
    "GE": lambda v, a: v >= a[0],
    ">=": lambda v, a: v >= a[0],
    "BEGINS_WITH": lambda v, a: v.startswith(a[0]),
    "BETWEEN": lambda v, a: a[0] <= v <= a[1],
}


def _range_test(comparison, objs):
    """A cheap test on a raw string sort key that keeps every item the key condition keeps
    (Python compares str by code point, which is DynamoDB's UTF-8 byte order); None when the
    condition is not on strings."""
    test = _RANGE_TESTS.get((comparison or "").upper())
    if test is None or not objs or any(getattr(o, "type", None) != "S" for o in objs):
        return None
    values = [o.value for o in objs]
    return lambda v: v is not None and v.type == "S" and test(v.value, values)


def _range_slice(keys, comparison, objs):
    """The part of a sorted list of string sort keys a key condition can keep, found by
    bisection (the condition's own test still runs on each of them); None when the condition
    is not one on strings."""
    comparison = (comparison or "").upper()
    if not comparison:
        return keys
    if comparison not in _RANGE_TESTS or not objs or any(getattr(o, "type", None) != "S" for o in objs):
        return None
    a = objs[0].value
    if comparison in ("EQ", "="):
        return keys[bisect.bisect_left(keys, a) : bisect.bisect_right(keys, a)]
    if comparison in ("LT", "<"):
        return keys[: bisect.bisect_left(keys, a)]
    if comparison in ("LE", "<="):
        return keys[: bisect.bisect_right(keys, a)]
    if comparison in ("GT", ">"):
        return keys[bisect.bisect_right(keys, a) :]
    if comparison in ("GE", ">="):
        return keys[bisect.bisect_left(keys, a) :]
    if comparison == "BETWEEN":
        b = objs[1].value if len(objs) > 1 else a
        return keys[bisect.bisect_left(keys, a) : bisect.bisect_right(keys, b)]
    lo = hi = bisect.bisect_left(keys, a)  # BEGINS_WITH: the run of keys from the prefix on
    while hi < len(keys) and keys[hi].startswith(a):
        hi += 1
    return keys[lo:hi]


class _Lookups:
    """What a table's queries start from, kept beside moto's items and current through every
    write moto makes (Table.put_item and delete_item, UpdateItem's in-place change, a failed
    transaction's restore):

    - `sorted`: per partition already queried, its string sort keys in order, so a key
      condition reads its range by bisection instead of every item of the partition;
    - `buckets`: per index already queried, the table keys of the items under each index hash
      value. Entries are only added (from `dirty`, the keys written since the last index
      query); one whose item is gone or no longer carries that value is dropped when a query
      meets it, so a bucket never answers an item moto would not.
    """

    __slots__ = ("sorted", "buckets", "dirty")

    def __init__(self):
        self.sorted = {}  # hash key -> [sort key strings, in order]
        self.buckets = {}  # index name -> (hash attribute, {(type, value): {(hash, range)}})
        self.dirty = set()

    @staticmethod
    def of(table) -> "_Lookups":
        found = table.__dict__.get("_emulator_lookups")
        if found is None:
            found = table._emulator_lookups = _Lookups()
        return found

    def written(self, table, hash_key, range_key, present: bool) -> None:
        if self.buckets and present:
            self.dirty.add((hash_key, range_key))
        keys = self.sorted.get(hash_key)
        if keys is None or range_key is None:
            return
        if getattr(range_key, "type", None) != "S":
            del self.sorted[hash_key]  # moto's own path for other key types
            return
        value = range_key.value
        at = bisect.bisect_left(keys, value)
        there = at < len(keys) and keys[at] == value
        if present and not there:
            keys.insert(at, value)
        elif there and not present:
            del keys[at]

    def partition(self, table, hash_key, comparison, objs):
        """The partition's items the key condition may keep, or None for moto's own path."""
        held = table.items.get(hash_key)
        if not isinstance(held, dict):
            return []
        keys = self.sorted.get(hash_key)
        if keys is None:
            if any(getattr(k, "type", None) != "S" for k in held):
                return None
            keys = self.sorted[hash_key] = sorted(k.value for k in held)
        picked = _range_slice(keys, comparison, objs)
        if picked is None:
            return None
        out = []
        for value in picked:
            item = held.get(DynamoType({"S": value}))
            if item is not None:
                out.append(item)
        return out

    def index(self, table, index_name, attr, want):
        """The items whose `attr` equals `want` (for the index `index_name`)."""
        if self.dirty:
            for hash_key, range_key in self.dirty:
                item = _item(table, hash_key, range_key)
                if item is None:
                    continue
                for a, buckets in self.buckets.values():
                    v = item.attrs.get(a)
                    if v is not None and isinstance(v.value, str):
                        buckets.setdefault((v.type, v.value), set()).add((hash_key, range_key))
            self.dirty.clear()
        entry = self.buckets.get(index_name)
        if entry is None or entry[0] != attr:
            buckets = {}
            for item in _every_item(table):
                v = item.attrs.get(attr)
                if v is not None and isinstance(v.value, str):
                    buckets.setdefault((v.type, v.value), set()).add((item.hash_key, item.range_key))
            entry = self.buckets[index_name] = (attr, buckets)
        buckets = entry[1]
        slot = (want.type, want.value)
        keys = buckets.get(slot)
        if not keys:
            return []
        out = []
        for k in list(keys):
            item = _item(table, *k)
            v = item.attrs.get(attr) if item is not None else None
            if v is None or v.type != want.type or v.value != want.value:
                keys.discard(k)
            else:
                out.append(item)
        if not keys:
            del buckets[slot]
        return out


def _item(table, hash_key, range_key):
    if table.range_key_attr is not None:
        held = table.items.get(hash_key)
        return held.get(range_key) if held is not None else None
    return table.items.get(hash_key)


def _every_item(table):
    # moto's all_items() also sorts the whole table, with its slow comparisons.
    for held in table.items.values():
        if table.range_key_attr:
            yield from held.values()
        else:
            yield held


def _written(table, hash_key, range_key, present: bool) -> None:
    lookups = table.__dict__.get("_emulator_lookups")
    if lookups is not None:
        lookups.written(table, hash_key, range_key, present)


def queries_read_their_partition():
    """A query costs what it reads, not the whole table. moto's Table.query lists every item
    of the table, keeps those of the partition (for an index, by comparing each item's
    attributes), sorts them and only then applies the sort-key condition, with moto's generic
    comparisons on every item: each query cost O(table), and a clinic's queries slowed down with
    everything ever written. Here a table query bisects its partition's sorted sort keys to the
    key condition's range, and an index query starts from the items filed under its hash value
    (`_Lookups`), both then narrowed by the sort-key condition on raw strings. Only items moto
    would drop are left out, so sorting, key conditions, paging, filters and projections stay
    moto's own."""
    from moto.dynamodb import models as dynamodb
    from moto.dynamodb.models.table import Table

    original = Table.query
    table_put, table_delete = Table.put_item, Table.delete_item
    backend_update = dynamodb.DynamoDBBackend.update_item

    def put_item(self, *args, **kwargs):
        item = table_put(self, *args, **kwargs)
        _written(self, item.hash_key, item.range_key, True)
        return item

    def delete_item(self, hash_key, range_key, *args, **kwargs):
        item = table_delete(self, hash_key, range_key, *args, **kwargs)
        if item is not None:
            _written(self, item.hash_key, item.range_key, False)
        return item

    def update_item(self, table_name, *args, **kwargs):
        item = backend_update(self, table_name, *args, **kwargs)
        if item is not None:
            _written(self.get_table(table_name), item.hash_key, item.range_key, True)
        return item

    Table.put_item, Table.delete_item = put_item, delete_item
    dynamodb.DynamoDBBackend.update_item = update_item

    def query(self, hash_key, *args, **kwargs):
        # moto passes these positionally: range_comparison, range_objs, limit,
        # exclusive_start_key, scan_index_forward, projection_expressions, index_name.
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        comparison = args[0] if args else kwargs.get("range_comparison")
        objs = (args[1] if len(args) > 1 else kwargs.get("range_objs")) or []
        range_conditions = kwargs.get("range_key_conditions") or []
        condition_on = range_conditions[-1][0] if range_conditions else None
        if len(range_conditions) > 1:
            comparison = None  # a multi-attribute sort key: leave it to moto
        test = _range_test(comparison, objs)

        if index_name:
            index = next((i for i in self.all_indexes() if i.name == index_name), None)
            if index is None:
                return original(self, hash_key, *args, **kwargs)
            hashes = [k["AttributeName"] for k in index.schema if k["KeyType"] == "HASH"]
            ranges = [k["AttributeName"] for k in index.schema if k["KeyType"] == "RANGE"]
            if len(hashes) != 1:
                return original(self, hash_key, *args, **kwargs)
            attr = hashes[0]
            want = dict(kwargs.get("hash_key_conditions") or []).get(attr, hash_key)
            if want is None or not isinstance(want.value, str):
                return original(self, hash_key, *args, **kwargs)
            sort_attr = ranges[0] if len(ranges) == 1 else None
            if sort_attr is None or (condition_on and condition_on != sort_attr):
                test = None
            items = _Lookups.of(self).index(self, index_name, attr, want)
            if test is not None:
                items = [i for i in items if test(i.attrs.get(sort_attr))]
        else:
            if hash_key is None or not self.range_key_attr:
                return original(self, hash_key, *args, **kwargs)
            on_sort_key = condition_on is None or condition_on == self.range_key_attr
            items = _Lookups.of(self).partition(
                self, hash_key, comparison if on_sort_key else None, objs
            )
            if items is None:
                partition = self.items.get(hash_key)
                items = list(partition.values()) if isinstance(partition, dict) else []
                if test is not None and on_sort_key:
                    items = [i for i in items if test(i.range_key)]
        self.all_items = lambda: items
        try:
            return original(self, hash_key, *args, **kwargs)
        finally:
            del self.all_items

    Table.query = query


def queue_attributes_cost_what_they_read():
    """moto's Queue.attributes computes every attribute, the three message counts included
    (each a pass over every message of the queue), and moto reads it for one flag on every
    SendMessage and three times per message on every ReceiveMessage (the retention check): with
    a backlog of n messages a receive cost O(n^2) and the consumers fell further behind the
    longer they were behind. Here it is a mapping that computes an attribute when it is read,
    with the same keys and values; the retention check reads the one attribute it needs."""
    from collections.abc import Mapping

    from moto.sqs import models as sqs
    from moto.core.utils import camelcase_to_underscores

    class QueueAttributes(Mapping):
        __slots__ = ("_queue", "_names")

        def __init__(self, queue):
            self._queue = queue
            names = list(queue.BASE_ATTRIBUTES)
            if queue.fifo_queue:
                names += queue.FIFO_ATTRIBUTES
            if queue.kms_master_key_id:
                names += queue.KMS_ATTRIBUTES
            self._names = names

        def __getitem__(self, name):
            if name not in self._names:
                raise KeyError(name)
            queue = self._queue
            if name == "Policy" and queue.policy:
                value = queue.policy
            elif name == "RedrivePolicy" and queue.redrive_policy:
                value = json.dumps(queue.redrive_policy)
            else:
                value = getattr(queue, camelcase_to_underscores(name))
            return str(value).lower() if isinstance(value, bool) else value

        def __iter__(self):
            return iter(self._names)

        def __len__(self):
            return len(self._names)

    sqs.Queue.attributes = property(QueueAttributes)

    def is_message_valid_based_on_retention_period(self, queue_name, message):
        retention = int(self.get_queue(queue_name).message_retention_period)
        return retention + message.sent_timestamp / 1000 > sqs.unix_time()

    sqs.SQSBackend.is_message_valid_based_on_retention_period = (
        is_message_valid_based_on_retention_period
    )


def queues_forget_expired_messages():
    """SQS deletes a message once it is older than its queue's MessageRetentionPeriod; moto
    only stops a receive when it meets one, and keeps it (and every message behind it) forever.
    Here a receive first drops the queue's expired messages (at most once a second per queue),
    so a queue nobody reads, such as the local events tap, holds what its retention allows."""
    from moto.sqs import models as sqs

    original = sqs.SQSBackend.receive_message

    def receive_message(self, queue_name, *args, **kwargs):
        try:
            queue = self.get_queue(queue_name)
        except Exception:
            queue = None
        if queue is not None:
            forget_expired_messages(queue, sqs.unix_time())
        return original(self, queue_name, *args, **kwargs)

    sqs.SQSBackend.receive_message = receive_message


def forget_expired_messages(queue, now: float) -> None:
    if now < getattr(queue, "_emulator_purged_at", 0.0) + 1.0:
        return
    queue._emulator_purged_at = now
    cutoff = (now - int(queue.message_retention_period)) * 1000
    if not queue._messages:
        return
    kept = []
    for message in queue._messages:
        if message.sent_timestamp > cutoff:
            kept.append(message)
        else:
            queue._pending_messages.discard(message)
    queue._messages = kept


def batch_sends_keep_system_attributes():
    """SendMessageBatch keeps each entry's MessageSystemAttributes (the X-Ray AWSTraceHeader),
    as SendMessage does and SQS does for both; moto's batch dropped them."""
    from moto.sqs.models import SQSBackend

    original = SQSBackend.send_message_batch

    def send_message_batch(self, queue_name, entries):
        messages, failed = original(self, queue_name, entries)
        by_id = {e.get("Id"): e for e in entries.values()}
        for m in messages:
            entry = by_id.get(getattr(m, "user_id", None)) or {}
            if entry.get("MessageSystemAttributes"):
                m.system_attributes = entry["MessageSystemAttributes"]
        return messages, failed

    SQSBackend.send_message_batch = send_message_batch


# The answers whose every member is plain data (attribute values, counts, keys, stream records):
# written with json.dumps instead of moto's shape-walking serialiser.
PLAIN_ANSWERS = {
    "GetItem",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "Query",
    "Scan",
    "BatchGetItem",
    "BatchWriteItem",
    "TransactGetItems",
    "TransactWriteItems",
    "GetRecords",
}


def _unix_time(value: datetime.datetime):
    """As moto's serialiser writes a timestamp: epoch seconds, truncated to milliseconds."""
    seconds = calendar.timegm(value.timetuple())
    return seconds + (value.microsecond // 1000) / 1000.0 if value.microsecond else seconds


def _plain_json(value):
    if isinstance(value, datetime.datetime):
        return _unix_time(value)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    if isinstance(value, set):
        return list(value)
    raise TypeError(f"{type(value).__name__} in a DynamoDB answer")


def answers_in_plain_json():
    """moto writes every answer by walking botocore's output shape member by member; for a
    Query or a GetRecords of a hundred items that walk was most of the request's time, and the
    DynamoDB lock is held meanwhile. The answers in PLAIN_ANSWERS are already the wire's JSON
    (attribute values as {"S": ...}), so they are dumped directly: members the operation does not
    have and null members of the answer are left out as moto leaves them out (nested values are
    never null: attribute values and stream records, which a test compares with moto's), binary
    values are base64 and timestamps epoch seconds as moto writes them. Errors and every other
    operation still go through moto's serialiser."""
    from moto.core.responses import ActionResult
    from moto.dynamodb.responses import DynamoHandler
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

    for handler in (DynamoHandler, DynamoDBStreamsHandler):
        serialized = handler.serialized

        def plain(self, action_result, serialized=serialized):
            result = action_result.result
            action = self._get_action()
            if action not in PLAIN_ANSWERS or not isinstance(result, dict):
                return serialized(self, action_result)
            status, headers, _ = serialized(self, ActionResult({}))
            members = _output_members(self, action)
            body = {k: v for k, v in result.items() if k in members and v is not None}
            return status, headers, json.dumps(body, default=_plain_json)

        handler.serialized = plain


_MEMBERS: dict = {}


def _output_members(response, action: str) -> frozenset:
    key = (response.boto3_service_name, action)
    if key not in _MEMBERS:
        from moto.core.responses import get_service_model

        shape = get_service_model(response.boto3_service_name).operation_model(action).output_shape
        _MEMBERS[key] = frozenset(shape.members) if shape is not None else frozenset()
    return _MEMBERS[key]


def event_paths_parsed_once():
    """moto delivers every event to every matching target through its input-template code,
    which parses each input path (six of them by default, for a target without a transformer)
    with jsonpath_ng, and jsonpath_ng builds a new parser, tables and all, for every parse: that
    was a seventh of the emulator's time under load. A parsed path is immutable and the same for
    the same text, so each text is parsed once."""
    import functools

    import jsonpath_ng.ext

    jsonpath_ng.ext.parse = functools.lru_cache(maxsize=512)(jsonpath_ng.ext.parse)


def update_expressions_parsed_once():
    """moto parses an UpdateExpression twice per UpdateItem (once to check it, once to run it)
    and parses it again for every Update of a transaction; what it parses is the same for the
    same text, and moto's validator works on a deep copy of the tree (names and values are
    substituted there, never in the parsed tree), so each text is parsed once."""
    import functools

    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    make = UpdateExpressionParser.make.__func__
    UpdateExpressionParser.make = classmethod(functools.lru_cache(maxsize=1024)(make))


def services_listed_once():
    """moto's dispatcher lists its own package directory (a listdir and an isdir per service)
    for every request to find the service by host name; the list does not change."""
    from moto import backends

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules


def quiet_request_log():
    """werkzeug logs a line per request (a twelfth of the emulator's time under load, all of it
    holding the interpreter); errors are still logged. EMULATOR_REQUEST_LOG=1 keeps the lines."""
    import logging

    if os.environ.get("EMULATOR_REQUEST_LOG") != "1":
        logging.getLogger("werkzeug").setLevel(logging.WARNING)


def serialise_dynamodb(app):
    """Runs DynamoDB and DynamoDB Streams requests one at a time under one lock. With
    EMULATOR_TRACE=FILE each of them also appends a JSON line to FILE: the operation, the index
    and key condition it named, the seconds it waited for the lock and held it, the answer's size
    (to see which requests grow with the data, e.g. during `make soak`)."""
    trace = os.environ.get("EMULATOR_TRACE")
    out = open(trace, "a", buffering=1) if trace else None
    out_lock = threading.Lock()

    def traced(environ, start_response, target):
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        asked = time.monotonic()
        with _DYNAMODB:
            began = time.monotonic()
            chunks = list(app(environ, start_response))
            ended = time.monotonic()
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            request = {}
        line = {
            "t": time.time(),
            "op": target.split(".")[-1],
            "wait": began - asked,
            "hold": ended - began,
            "bytes": sum(len(c) for c in chunks),
        }
        for name in ("IndexName", "KeyConditionExpression", "FilterExpression"):
            if name in request:
                line[name] = request[name]
        if "TransactItems" in request:
            line["actions"] = len(request["TransactItems"])
        with out_lock:
            out.write(json.dumps(line) + "\n")
        return chunks

    def wrapped(environ, start_response):
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target.startswith("DynamoDB_") or target.startswith("DynamoDBStreams_"):
            if out is not None:
                return traced(environ, start_response, target)
            with _DYNAMODB:
                return list(app(environ, start_response))
        return app(environ, start_response)

    return wrapped


def patch_moto() -> None:
    untrack_dynamodb_models()
    snapshot_only_touched_items()
    one_stream_record_per_update()
    bounded_streams()
    read_streams_from_the_live_table()
    queries_read_their_partition()
    batch_sends_keep_system_attributes()
    queue_attributes_cost_what_they_read()
    queues_forget_expired_messages()
    if os.environ.get("EMULATOR_MOTO_SERIALISER") != "1":
        answers_in_plain_json()
    event_paths_parsed_once()
    update_expressions_parsed_once()
    services_listed_once()
    quiet_request_log()


def exit_with_parent() -> None:
    """Stops the emulator when the process that started it is gone (killed outright, so it
    could not stop the emulator itself): no orphan keeps the port and the memory."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=4566)
    args = parser.parse_args()
    patch_moto()
    exit_with_parent()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        serialise_dynamodb(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
