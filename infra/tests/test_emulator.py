"""The semantics infra/emulator.py keeps while patching moto: atomic, all-or-nothing
transactions, exact conditional writes under concurrency, streams that deliver every committed
write exactly once and in order (also after trimming), and memory and per-transaction time that
do not grow with the table.

Each test class starts its own emulator (python infra/emulator.py on a free loopback port) and
stops it afterwards. Run with: .venv/bin/python -m unittest discover -s infra/tests -v
"""

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

EMULATOR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "emulator.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Emulator:
    def __init__(self, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, EMULATOR, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, **env),
        )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the emulator exited at start:\n{self.output()}")
            try:
                urllib.request.urlopen(self.url + "/moto-api/", timeout=2).read()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the emulator did not answer:\n{self.output()}")
                time.sleep(0.1)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    def client(self, service: str):
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(retries={"max_attempts": 1}, max_pool_connections=32),
        )

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def get_json(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as answer:
            return json.loads(answer.read())

    def post(self, path: str) -> None:
        urllib.request.urlopen(urllib.request.Request(self.url + path, method="POST"), timeout=30).read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class EmulatorTest(unittest.TestCase):
    env: dict = {}

    @classmethod
    def setUpClass(cls):
        cls.emulator = Emulator(**cls.env)
        cls.ddb = cls.emulator.client("dynamodb")
        cls.streams = cls.emulator.client("dynamodbstreams")

    @classmethod
    def tearDownClass(cls):
        cls.emulator.stop()


def S(value) -> dict:
    return {"S": str(value)}


def create_table(ddb, name: str, view: str = "NEW_AND_OLD_IMAGES") -> None:
    ddb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "gpk", "gsk")
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "gsi",
                "KeySchema": [
                    {"AttributeName": "gpk", "KeyType": "HASH"},
                    {"AttributeName": "gsk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": view},
    )


def key(pk, sk) -> dict:
    return {"pk": S(pk), "sk": S(sk)}


def put(table, item: dict, condition: str = None) -> dict:
    action = {"TableName": table, "Item": item}
    if condition:
        action["ConditionExpression"] = condition
    return {"Put": action}


def update(table, k: dict, expression: str, values: dict, condition: str = None) -> dict:
    action = {
        "TableName": table,
        "Key": k,
        "UpdateExpression": expression,
        "ExpressionAttributeValues": values,
    }
    if condition:
        action["ConditionExpression"] = condition
    return {"Update": action}


def delete(table, k: dict) -> dict:
    return {"Delete": {"TableName": table, "Key": k}}


def check(table, k: dict, condition: str) -> dict:
    return {"ConditionCheck": {"TableName": table, "Key": k, "ConditionExpression": condition}}


def scan_all(ddb, table: str) -> list:
    items, start = [], {}
    while True:
        page = ddb.scan(TableName=table, ConsistentRead=True, **start)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return sorted(items, key=lambda i: (i["pk"]["S"], i["sk"]["S"]))
        start = {"ExclusiveStartKey": page["LastEvaluatedKey"]}


def query_gsi(ddb, table: str, gpk: str) -> list:
    return ddb.query(
        TableName=table,
        IndexName="gsi",
        KeyConditionExpression="gpk = :g",
        ExpressionAttributeValues={":g": S(gpk)},
    )["Items"]


class StreamReader:
    def __init__(self, ddb, streams, table: str, kind: str):
        self.streams = streams
        arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]
        self.iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType=kind
        )["ShardIterator"]
        self.records = []

    def drain(self, limit: int = 100) -> list:
        new = []
        while True:
            out = self.streams.get_records(ShardIterator=self.iterator, Limit=limit)
            new.extend(out["Records"])
            self.iterator = out["NextShardIterator"]
            if not out["Records"]:
                self.records.extend(new)
                return new

    def writes(self) -> list:
        return [describe_record(r) for r in self.records]

    def sequence_numbers(self) -> list:
        return [int(r["dynamodb"]["SequenceNumber"]) for r in self.records]


def describe_record(record: dict) -> tuple:
    d = record["dynamodb"]
    image = d.get("NewImage") or {}
    return (
        record["eventName"],
        d["Keys"]["pk"]["S"],
        d["Keys"]["sk"]["S"],
        image.get("w", {}).get("S"),
    )


def cancellation_codes(error: ClientError) -> list:
    return [r.get("Code", "None") for r in error.response.get("CancellationReasons", [])]


class TransactionTest(EmulatorTest):
    def setUp(self):
        self.table = self.id().rsplit(".", 1)[-1]
        create_table(self.ddb, self.table)
        for item in (
            {**key("u1", "a"), "gpk": S("g1"), "gsk": S("1"), "v": {"N": "1"}, "w": S("a0")},
            {**key("u1", "b"), "gpk": S("g1"), "gsk": S("2"), "v": {"N": "1"}, "w": S("b0")},
            {**key("u2", "c"), "gpk": S("g2"), "gsk": S("3"), "w": S("c0")},
            {**key("u2", "f"), "w": S("f0")},
        ):
            self.ddb.put_item(TableName=self.table, Item=item)

    def state(self):
        return (
            scan_all(self.ddb, self.table),
            query_gsi(self.ddb, self.table, "g1"),
            query_gsi(self.ddb, self.table, "g2"),
            self.ddb.describe_table(TableName=self.table)["Table"]["ItemCount"],
        )

    def writes_of_failed_transaction(self, failing_action: dict) -> list:
        t = self.table
        return [
            put(t, {**key("u1", "d"), "gpk": S("g1"), "gsk": S("0"), "w": S("d1")}),
            update(t, key("u1", "a"), "SET v = v + :one, gsk = :g, w = :w",
                   {":one": {"N": "1"}, ":g": S("9"), ":w": S("a1")}),
            delete(t, key("u1", "b")),
            update(t, key("u3", "e"), "SET w = :w, gpk = :g, gsk = :s",
                   {":w": S("e1"), ":g": S("g2"), ":s": S("5")}),
            put(t, {**key("u2", "c"), "w": S("c1")}),
            failing_action,
        ]

    def test_failed_transaction_changes_nothing(self):
        before = self.state()
        reader = StreamReader(self.ddb, self.streams, self.table, "LATEST")
        t = self.table
        failures = [
            check(t, key("u2", "f"), "attribute_not_exists(pk)"),
            update(t, key("u1", "zz"), "SET w = :w", {":w": S("zz")}, "attribute_exists(pk)"),
            put(t, {**key("u2", "f"), "w": S("again")}, "attribute_not_exists(pk)"),
        ]
        for failing in failures:
            with self.assertRaises(ClientError) as caught:
                self.ddb.transact_write_items(TransactItems=self.writes_of_failed_transaction(failing))
            self.assertEqual(caught.exception.response["Error"]["Code"], "TransactionCanceledException")
            self.assertEqual(cancellation_codes(caught.exception), ["None"] * 5 + ["ConditionalCheckFailed"])
            self.assertEqual(self.state(), before)
        # the failing action first: nothing was applied before the failure either
        with self.assertRaises(ClientError):
            self.ddb.transact_write_items(
                TransactItems=[failures[0]] + self.writes_of_failed_transaction(failures[1])[:-1]
            )
        self.assertEqual(self.state(), before)
        # a validation failure after writes (the same item twice) rolls back as well
        with self.assertRaises(ClientError) as caught:
            self.ddb.transact_write_items(TransactItems=[
                put(t, {**key("u9", "x"), "w": S("x1")}),
                update(t, key("u1", "a"), "SET w = :w", {":w": S("a9")}),
                update(t, key("u9", "x"), "SET w = :w", {":w": S("x2")}),
            ])
        self.assertEqual(caught.exception.response["Error"]["Code"], "ValidationException")
        self.assertEqual(self.state(), before)
        # so does an action naming two operations (moto itself left the writes before it)
        with self.assertRaises(ClientError) as caught:
            self.ddb.transact_write_items(TransactItems=[
                put(t, {**key("u9", "x"), "w": S("x1")}),
                {**put(t, {**key("u9", "y"), "w": S("y1")}), **delete(t, key("u1", "b"))},
            ])
        self.assertEqual(caught.exception.response["Error"]["Code"], "ValidationException")
        self.assertEqual(self.state(), before)
        self.assertEqual(reader.drain(), [])

    def test_successful_transaction_applies_every_action(self):
        t = self.table
        reader = StreamReader(self.ddb, self.streams, t, "LATEST")
        self.ddb.transact_write_items(TransactItems=[
            put(t, {**key("u1", "d"), "gpk": S("g1"), "gsk": S("0"), "w": S("d1")},
                "attribute_not_exists(pk)"),
            update(t, key("u1", "a"), "SET v = v + :one, gsk = :g, w = :w",
                   {":one": {"N": "1"}, ":g": S("9"), ":w": S("a1")}, "v = :one"),
            delete(t, key("u1", "b")),
            update(t, key("u3", "e"), "SET w = :w, gpk = :g, gsk = :s",
                   {":w": S("e1"), ":g": S("g2"), ":s": S("5")}),
            check(t, key("u2", "c"), "attribute_exists(pk)"),
        ])
        items, g1, g2, count = self.state()
        self.assertEqual(
            [(i["pk"]["S"], i["sk"]["S"], i["w"]["S"]) for i in items],
            [("u1", "a", "a1"), ("u1", "d", "d1"), ("u2", "c", "c0"), ("u2", "f", "f0"),
             ("u3", "e", "e1")],
        )
        self.assertEqual(items[0]["v"], {"N": "2"})
        self.assertEqual([i["w"]["S"] for i in g1], ["d1", "a1"])
        self.assertEqual([i["w"]["S"] for i in g2], ["c0", "e1"])
        self.assertEqual(count, 5)
        # exactly one record per item written, in the transaction's order
        self.assertEqual(
            [describe_record(r) for r in reader.drain()],
            [
                ("INSERT", "u1", "d", "d1"),
                ("MODIFY", "u1", "a", "a1"),
                ("REMOVE", "u1", "b", None),
                ("INSERT", "u3", "e", "e1"),
            ],
        )

    def test_concurrent_conditional_puts_have_one_winner(self):
        threads = 8
        clients = [self.emulator.client("dynamodb") for _ in range(threads)]
        self.ddb.put_item(TableName=self.table, Item={**key("counter", "n"), "n": {"N": "0"}})
        for round_ in range(10):
            barrier = threading.Barrier(threads)
            outcomes = [None] * threads

            def attempt(i, transactional):
                barrier.wait()
                item = {**key("race", str(round_)), "w": S(i)}
                try:
                    if transactional:
                        clients[i].transact_write_items(TransactItems=[
                            put(self.table, item, "attribute_not_exists(pk)"),
                            update(self.table, key("counter", "n"), "SET n = n + :one",
                                   {":one": {"N": "1"}}),
                        ])
                    else:
                        clients[i].put_item(TableName=self.table, Item=item,
                                            ConditionExpression="attribute_not_exists(pk)")
                    outcomes[i] = "won"
                except ClientError as e:
                    outcomes[i] = e.response["Error"]["Code"]

            workers = [
                threading.Thread(target=attempt, args=(i, round_ % 2 == 1)) for i in range(threads)
            ]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            winners = [i for i, o in enumerate(outcomes) if o == "won"]
            self.assertEqual(len(winners), 1, outcomes)
            losing = "TransactionCanceledException" if round_ % 2 else "ConditionalCheckFailedException"
            self.assertEqual(sorted(set(outcomes) - {"won"}), [losing])
            stored = self.ddb.get_item(TableName=self.table, Key=key("race", str(round_)),
                                       ConsistentRead=True)["Item"]
            self.assertEqual(stored["w"]["S"], str(winners[0]))
        counter = self.ddb.get_item(TableName=self.table, Key=key("counter", "n"), ConsistentRead=True)
        self.assertEqual(counter["Item"]["n"], {"N": "5"})


class QueryTest(EmulatorTest):
    """A table query reads its partition alone (queries_read_their_partition) and answers
    exactly what DynamoDB would: key conditions, order, paging, filters."""

    def test_queries_answer_their_partition_only_in_order_and_in_pages(self):
        table = "queries"
        create_table(self.ddb, table, view="NEW_IMAGE")
        for p in ("p1", "p2", "p3"):
            for i in range(30):
                self.ddb.put_item(
                    TableName=table,
                    Item={**key(p, f"{'A' if i % 2 else 'B'}#{i:03}"), "n": {"N": str(i)},
                          "gpk": S("g"), "gsk": S(f"{p}{i:03}")},
                )

        def query(limit=None, forward=True, **kw):
            out, start = [], None
            while True:
                args = dict(TableName=table, ScanIndexForward=forward, **kw)
                if limit:
                    args["Limit"] = limit
                if start:
                    args["ExclusiveStartKey"] = start
                page = self.ddb.query(**args)
                out += [i["sk"]["S"] for i in page["Items"]]
                start = page.get("LastEvaluatedKey")
                if not start:
                    return out

        every = sorted(f"{'A' if i % 2 else 'B'}#{i:03}" for i in range(30))
        base = dict(ExpressionAttributeValues={":p": S("p2")})
        self.assertEqual(query(KeyConditionExpression="pk = :p", **base), every)
        self.assertEqual(query(limit=7, KeyConditionExpression="pk = :p", **base), every)
        self.assertEqual(
            query(limit=4, forward=False, KeyConditionExpression="pk = :p", **base),
            every[::-1],
        )
        a_only = [s for s in every if s.startswith("A#")]
        self.assertEqual(
            query(limit=5, KeyConditionExpression="pk = :p AND begins_with(sk, :a)",
                  ExpressionAttributeValues={":p": S("p2"), ":a": S("A#")}),
            a_only,
        )
        self.assertEqual(
            query(KeyConditionExpression="pk = :p AND sk BETWEEN :lo AND :hi",
                  ExpressionAttributeValues={":p": S("p2"), ":lo": S("A#005"), ":hi": S("A#011")}),
            ["A#005", "A#007", "A#009", "A#011"],
        )
        self.assertEqual(
            query(KeyConditionExpression="pk = :p", FilterExpression="n < :k",
                  ExpressionAttributeValues={":p": S("p2"), ":k": {"N": "3"}}),
            ["A#001", "B#000", "B#002"],
        )
        self.assertEqual(query(KeyConditionExpression="pk = :p",
                               ExpressionAttributeValues={":p": S("nobody")}), [])
        # An index query still sees every partition, with its own key conditions and order.
        def gsi(limit=None, forward=True, **kw):
            out, start = [], None
            while True:
                args = dict(TableName=table, IndexName="gsi", ScanIndexForward=forward, **kw)
                if limit:
                    args["Limit"] = limit
                if start:
                    args["ExclusiveStartKey"] = start
                page = self.ddb.query(**args)
                out += [i["gsk"]["S"] for i in page["Items"]]
                start = page.get("LastEvaluatedKey")
                if not start:
                    return out

        every_g = sorted(f"{p}{i:03}" for p in ("p1", "p2", "p3") for i in range(30))
        g = {":g": S("g")}
        self.assertEqual(gsi(KeyConditionExpression="gpk = :g", ExpressionAttributeValues=g), every_g)
        self.assertEqual(
            gsi(limit=11, forward=False, KeyConditionExpression="gpk = :g",
                ExpressionAttributeValues=g),
            every_g[::-1],
        )
        self.assertEqual(
            gsi(limit=4, KeyConditionExpression="gpk = :g AND begins_with(gsk, :p)",
                ExpressionAttributeValues={**g, ":p": S("p3")}),
            [s for s in every_g if s.startswith("p3")],
        )
        self.assertEqual(
            gsi(KeyConditionExpression="gpk = :g AND gsk > :lo",
                ExpressionAttributeValues={**g, ":lo": S("p3027")}),
            ["p3028", "p3029"],
        )
        self.assertEqual(
            gsi(limit=3, forward=False,
                KeyConditionExpression="gpk = :g AND gsk BETWEEN :lo AND :hi",
                ExpressionAttributeValues={**g, ":lo": S("p1028"), ":hi": S("p2001")}),
            ["p2001", "p2000", "p1029", "p1028"],
        )
        self.assertEqual(
            gsi(KeyConditionExpression="gpk = :g AND gsk <= :hi",
                ExpressionAttributeValues={**g, ":hi": S("p1001")}),
            ["p1000", "p1001"],
        )
        self.assertEqual(
            gsi(KeyConditionExpression="gpk = :none", ExpressionAttributeValues={":none": S("x")}),
            [],
        )
        # Table queries with every comparison.
        for cond, values, expected in [
            ("sk < :v", {":v": S("A#005")}, ["A#001", "A#003"]),
            ("sk >= :v", {":v": S("B#026")}, ["B#026", "B#028"]),
            ("sk = :v", {":v": S("B#010")}, ["B#010"]),
        ]:
            self.assertEqual(
                query(KeyConditionExpression=f"pk = :p AND {cond}",
                      ExpressionAttributeValues={":p": S("p2"), **values}),
                expected,
            )


    def test_queries_follow_every_write_update_delete_and_rollback(self):
        """The sorted sort keys and index buckets queries start from (emulator._Lookups) are
        built by the first query and must follow every later change: each answer is compared
        with one computed from a full scan."""
        table = "follow"
        create_table(self.ddb, table, view="NEW_IMAGE")

        def expected(pk=None, gpk=None, prefix=""):
            rows = scan_all(self.ddb, table)
            if pk is not None:
                return [i["sk"]["S"] for i in rows
                        if i["pk"]["S"] == pk and i["sk"]["S"].startswith(prefix)]
            rows = [i for i in rows if i.get("gpk", {}).get("S") == gpk
                    and i.get("gsk", {}).get("S", "").startswith(prefix)]
            return [i["gsk"]["S"] for i in sorted(rows, key=lambda i: i["gsk"]["S"])]

        def table_query(pk, prefix=""):
            cond, values = "pk = :p", {":p": S(pk)}
            if prefix:
                cond, values = cond + " AND begins_with(sk, :s)", {**values, ":s": S(prefix)}
            return [i["sk"]["S"] for i in self.ddb.query(
                TableName=table, KeyConditionExpression=cond, ExpressionAttributeValues=values,
            )["Items"]]

        def index_query(gpk, prefix=""):
            cond, values = "gpk = :g", {":g": S(gpk)}
            if prefix:
                cond, values = cond + " AND begins_with(gsk, :s)", {**values, ":s": S(prefix)}
            return [i["gsk"]["S"] for i in self.ddb.query(
                TableName=table, IndexName="gsi", KeyConditionExpression=cond,
                ExpressionAttributeValues=values,
            )["Items"]]

        def agree():
            for pk in ("a", "b"):
                for prefix in ("", "x#", "y#"):
                    self.assertEqual(table_query(pk, prefix), expected(pk=pk, prefix=prefix))
            for gpk in ("g1", "g2", "g3"):
                for prefix in ("", "a"):
                    self.assertEqual(index_query(gpk, prefix), expected(gpk=gpk, prefix=prefix))

        for i in range(6):
            self.ddb.put_item(TableName=table, Item={
                **key("a", f"x#{i}"), "gpk": S("g1"), "gsk": S(f"a{i}")})
        agree()  # builds the lookups
        # a put of a new item, an overwrite that moves an item to another index partition,
        # an update that moves one, an update that removes the index key, a new item by update
        self.ddb.put_item(TableName=table, Item={**key("a", "y#1"), "gpk": S("g2"), "gsk": S("a9")})
        self.ddb.put_item(TableName=table, Item={**key("a", "x#0"), "gpk": S("g2"), "gsk": S("b0")})
        self.ddb.update_item(TableName=table, Key=key("a", "x#1"), UpdateExpression="SET gpk = :g",
                             ExpressionAttributeValues={":g": S("g3")})
        self.ddb.update_item(TableName=table, Key=key("a", "x#2"), UpdateExpression="REMOVE gpk")
        self.ddb.update_item(TableName=table, Key=key("b", "x#7"),
                             UpdateExpression="SET gpk = :g, gsk = :s",
                             ExpressionAttributeValues={":g": S("g1"), ":s": S("a7")})
        agree()
        # deletes, alone and in a batch
        self.ddb.delete_item(TableName=table, Key=key("a", "x#3"))
        self.ddb.batch_write_item(RequestItems={table: [
            {"DeleteRequest": {"Key": key("a", "x#4")}},
            {"PutRequest": {"Item": {**key("b", "y#2"), "gpk": S("g3"), "gsk": S("a2")}}},
        ]})
        agree()
        # a transaction that fails after its writes changes nothing the queries see
        before = scan_all(self.ddb, table)
        with self.assertRaises(ClientError):
            self.ddb.transact_write_items(TransactItems=[
                put(table, {**key("b", "x#8"), "gpk": S("g2"), "gsk": S("a8")}),
                delete(table, key("a", "x#5")),
                update(table, key("a", "y#1"), "SET gpk = :g", {":g": S("g1")}),
                check(table, key("a", "nothing"), "attribute_exists(pk)"),
            ])
        self.assertEqual(scan_all(self.ddb, table), before)
        agree()
        # and one that succeeds changes what they see
        self.ddb.transact_write_items(TransactItems=[
            put(table, {**key("b", "x#8"), "gpk": S("g2"), "gsk": S("a8")}),
            delete(table, key("a", "x#5")),
            update(table, key("a", "y#1"), "SET gpk = :g", {":g": S("g1")}),
        ])
        agree()
        self.assertEqual(index_query("g1"), ["a7", "a9"])
        self.assertEqual(table_query("a"), ["x#0", "x#1", "x#2", "y#1"])


class SqsTest(EmulatorTest):
    def test_a_batch_keeps_each_entrys_trace_header(self):
        sqs = self.emulator.client("sqs")
        url = sqs.create_queue(QueueName="traced")["QueueUrl"]
        trace = {"AWSTraceHeader": {"DataType": "String", "StringValue": "Root=1-5759e988-bd862e3fe1be46a994272793"}}
        sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": "a", "MessageBody": "traced", "MessageSystemAttributes": trace},
            {"Id": "b", "MessageBody": "plain"},
        ])
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                  MessageSystemAttributeNames=["All"])["Messages"]
        headers = {m["Body"]: m.get("Attributes", {}).get("AWSTraceHeader") for m in got}
        self.assertEqual(headers, {"traced": "Root=1-5759e988-bd862e3fe1be46a994272793", "plain": None})


    def test_queue_attributes_count_and_read_as_before(self):
        """Queue attributes are computed when read (queue_attributes_cost_what_they_read):
        the counts, the redrive policy, the FIFO flags and content-based deduplication are as
        SQS reports them."""
        sqs = self.emulator.client("sqs")
        dlq = sqs.create_queue(QueueName="counted-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})
        url = sqs.create_queue(QueueName="counted", Attributes={"RedrivePolicy": redrive})["QueueUrl"]
        for i in range(5):
            sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
        sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=600)
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2, VisibilityTimeout=600)
        self.assertEqual(len(got["Messages"]), 2)
        every = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        self.assertEqual(every["ApproximateNumberOfMessages"], "3")
        self.assertEqual(every["ApproximateNumberOfMessagesNotVisible"], "2")
        self.assertEqual(every["ApproximateNumberOfMessagesDelayed"], "1")
        self.assertEqual(json.loads(every["RedrivePolicy"]), json.loads(redrive))
        self.assertEqual(every["MessageRetentionPeriod"], "345600")
        self.assertNotIn("FifoQueue", every)
        some = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "VisibilityTimeout"]
        )["Attributes"]
        self.assertEqual(some, {"ApproximateNumberOfMessages": "3", "VisibilityTimeout": "30"})
        # creating the queue again with the same attributes is allowed, with others it is not
        sqs.create_queue(QueueName="counted", Attributes={"RedrivePolicy": redrive})
        with self.assertRaises(ClientError):
            sqs.create_queue(QueueName="counted", Attributes={"VisibilityTimeout": "5"})
        fifo = sqs.create_queue(QueueName="counted.fifo", Attributes={
            "FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
        for _ in range(2):
            sqs.send_message(QueueUrl=fifo, MessageBody="same", MessageGroupId="g")
        attrs = sqs.get_queue_attributes(QueueUrl=fifo, AttributeNames=["All"])["Attributes"]
        self.assertEqual((attrs["FifoQueue"], attrs["ContentBasedDeduplication"]), ("true", "true"))
        self.assertEqual(attrs["ApproximateNumberOfMessages"], "1")

    def test_expired_messages_are_dropped(self):
        """forget_expired_messages drops what is older than the queue's retention, in flight or
        not, and keeps the rest (checked on moto's own queue model with a chosen clock)."""
        sys.path.insert(0, os.path.dirname(EMULATOR))
        try:
            import emulator
        finally:
            sys.path.pop(0)
        from moto.sqs.models import Message, Queue

        queue = Queue("retained", region="us-east-1", account_id="123456789012",
                      MessageRetentionPeriod="60")
        now = 1_000_000.0
        for i, age in enumerate([120, 61, 58, 1]):
            m = Message(f"id{i}", f"m{i}")
            m.sent_timestamp = int((now - age) * 1000)
            queue._messages.append(m)
        queue._pending_messages.add(queue._messages[1])
        emulator.forget_expired_messages(queue, now)
        self.assertEqual([m.body for m in queue._messages], ["m2", "m3"])
        self.assertEqual(queue._pending_messages, set())
        # at most one pass a second
        old = Message("id9", "m9")
        old.sent_timestamp = int((now - 300) * 1000)
        queue._messages.insert(0, old)
        emulator.forget_expired_messages(queue, now + 0.5)
        self.assertEqual(len(queue._messages), 3)
        emulator.forget_expired_messages(queue, now + 1.0)
        self.assertEqual([m.body for m in queue._messages], ["m2", "m3"])


class UpdateExpressionTest(EmulatorTest):
    def test_one_expression_text_with_other_names_and_values_each_time(self):
        """An expression is parsed once and reused: each use still gets its own names and
        values, in UpdateItem and in transactions alike."""
        create_table(self.ddb, "updates")
        expression = "SET #f = :v, n = if_not_exists(n, :zero) + :one"
        for i, field in enumerate(["a", "b", "a", "c"]):
            self.ddb.update_item(
                TableName="updates",
                Key=key("p", "x"),
                UpdateExpression=expression,
                ExpressionAttributeNames={"#f": field},
                ExpressionAttributeValues={":v": S(f"v{i}"), ":zero": {"N": "0"}, ":one": {"N": "1"}},
            )
        self.ddb.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": "updates",
                        "Key": key("p", k),
                        "UpdateExpression": expression,
                        "ExpressionAttributeNames": {"#f": "t"},
                        "ExpressionAttributeValues": {":v": S(k), ":zero": {"N": "10"}, ":one": {"N": "2"}},
                    }
                }
                for k in ("x", "y")
            ]
        )
        items = {i["sk"]["S"]: i for i in scan_all(self.ddb, "updates")}
        x, y = items["x"], items["y"]
        self.assertEqual((x["a"], x["b"], x["c"], x["t"], x["n"]),
                         (S("v2"), S("v1"), S("v3"), S("x"), {"N": "6"}))
        self.assertEqual((y["t"], y["n"]), (S("y"), {"N": "12"}))


class EventsTest(EmulatorTest):
    def test_rules_deliver_each_event_as_before(self):
        """Input paths are parsed once and reused: every event still reaches every target whole,
        or shaped by the target's transformer, with its own values."""
        events, sqs = self.emulator.client("events"), self.emulator.client("sqs")
        events.create_event_bus(Name="bus")
        urls = {}
        for name in ("whole", "shaped"):
            urls[name] = sqs.create_queue(QueueName=f"events-{name}")["QueueUrl"]
        arn = lambda url: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        events.put_rule(Name="all", EventBusName="bus", EventPattern=json.dumps({"source": ["clinic"]}))
        events.put_targets(
            Rule="all",
            EventBusName="bus",
            Targets=[
                {"Id": "whole", "Arn": arn(urls["whole"])},
                {
                    "Id": "shaped",
                    "Arn": arn(urls["shaped"]),
                    "InputTransformer": {
                        "InputPathsMap": {"kind": "$.detail-type", "who": "$.detail.who"},
                        "InputTemplate": '{"kind": "<kind>", "who": "<who>"}',
                    },
                },
            ],
        )
        for i in range(3):
            events.put_events(
                Entries=[
                    {
                        "EventBusName": "bus",
                        "Source": "clinic",
                        "DetailType": f"kind.{i}",
                        "Detail": json.dumps({"who": f"p{i}"}),
                    }
                ]
            )

        def bodies(url):
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            found = [json.loads(m["Body"]) for m in got.get("Messages", [])]
            return sorted(found, key=lambda b: b.get("detail-type") or b.get("kind"))

        whole = bodies(urls["whole"])
        self.assertEqual([(e["detail-type"], e["detail"], e["source"]) for e in whole],
                         [(f"kind.{i}", {"who": f"p{i}"}, "clinic") for i in range(3)])
        self.assertEqual(len({e["id"] for e in whole}), 3)
        self.assertEqual(bodies(urls["shaped"]), [{"kind": f"kind.{i}", "who": f"p{i}"} for i in range(3)])


class PlainAnswerTest(unittest.TestCase):
    """The answers the emulator dumps as plain JSON are the ones moto's serialiser writes:
    the same requests, sent to an emulator with moto's serialiser, get the same bodies."""

    @classmethod
    def setUpClass(cls):
        cls.plain = Emulator()
        cls.moto = Emulator(EMULATOR_MOTO_SERIALISER="1")

    @classmethod
    def tearDownClass(cls):
        cls.plain.stop()
        cls.moto.stop()

    @staticmethod
    def bodies(emulator) -> list:
        """Every answer's body, as JSON, for one script of requests of each plain operation."""
        got = []
        ddb, streams = emulator.client("dynamodb"), emulator.client("dynamodbstreams")
        for client in (ddb, streams):
            client.meta.events.register(
                "after-call", lambda http_response, **_: got.append(json.loads(http_response.content))
            )
        create_table(ddb, "answers")
        item = {
            **key("p", "a"),
            "gpk": S("g"),
            "gsk": S("1"),
            "n": {"N": "12.50"},
            "b": {"B": b"\x00\xffsealed"},
            "yes": {"BOOL": True},
            "none": {"NULL": True},
            "list": {"L": [S("x"), {"N": "1"}, {"M": {"deep": {"B": b"\x01"}}}]},
            "map": {"M": {"s": S("y"), "ss": {"SS": ["a", "b"]}}},
            "ns": {"NS": ["1", "2"]},
            "bs": {"BS": [b"\x02", b"\x03"]},
        }
        ddb.put_item(TableName="answers", Item=item)
        ddb.put_item(TableName="answers", Item={**item, **key("p", "b")}, ReturnValues="ALL_OLD")
        ddb.put_item(TableName="answers", Item={**item, **key("p", "b")}, ReturnValues="ALL_OLD")
        ddb.get_item(TableName="answers", Key=key("p", "a"))
        ddb.get_item(TableName="answers", Key=key("p", "missing"))
        ddb.get_item(TableName="answers", Key=key("p", "a"), ProjectionExpression="n, b")
        ddb.update_item(
            TableName="answers",
            Key=key("p", "a"),
            UpdateExpression="SET n = n + :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="ALL_NEW",
        )
        ddb.update_item(
            TableName="answers",
            Key=key("p", "c"),
            UpdateExpression="SET w = :w",
            ExpressionAttributeValues={":w": S("new")},
        )
        ddb.query(
            TableName="answers",
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": S("p")},
            Limit=2,
        )
        ddb.query(
            TableName="answers",
            IndexName="gsi",
            KeyConditionExpression="gpk = :g",
            ExpressionAttributeValues={":g": S("g")},
            Select="COUNT",
        )
        ddb.scan(TableName="answers", Limit=1)
        ddb.batch_get_item(RequestItems={"answers": {"Keys": [key("p", "a"), key("p", "zz")]}})
        ddb.batch_write_item(RequestItems={"answers": [{"DeleteRequest": {"Key": key("p", "c")}}]})
        ddb.transact_get_items(TransactItems=[{"Get": {"TableName": "answers", "Key": key("p", "b")}}])
        ddb.transact_write_items(TransactItems=[put("answers", {**item, **key("q", "a")})])
        ddb.delete_item(TableName="answers", Key=key("q", "a"), ReturnValues="ALL_OLD")
        try:
            ddb.put_item(TableName="answers", Item=key("p", "a"), ConditionExpression="attribute_not_exists(pk)")
        except ClientError:
            pass
        reader = StreamReader(ddb, streams, "answers", "TRIM_HORIZON")
        reader.drain(limit=3)
        return got

    def test_plain_answers_are_motos_answers(self):
        plain, moto = self.bodies(self.plain), self.bodies(self.moto)
        self.assertEqual(len(plain), len(moto))

        def steady(body):
            """What differs between two emulators however the answer is written: ids, times, and
            a stream record's size (moto's estimate counts the characters of its time)."""
            return _masked(body, {"eventID", "NextShardIterator", "ShardIterator", "StreamArn",
                                  "LatestStreamArn", "LatestStreamLabel", "StreamLabel",
                                  "SizeBytes"})

        self.maxDiff = None
        for a, b in zip(plain, moto):
            self.assertEqual(steady(a), steady(b))
        records = [r for body in plain for r in body.get("Records", [])]
        self.assertEqual(len(records), 8)  # the stream was read, in pages of three
        self.assertTrue(all(isinstance(r["dynamodb"]["ApproximateCreationDateTime"], (int, float))
                            for r in records))


def _masked(value, names: set):
    if isinstance(value, dict):
        return {
            k: ("~" if k in names or k.endswith("DateTime") else _masked(v, names))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_masked(v, names) for v in value]
    return value


class StreamTest(EmulatorTest):
    # a small tail so that trimming happens many times within the test
    env = {"EMULATOR_STREAM_TAIL": "50"}

    def test_readers_see_every_committed_write_once_in_order(self):
        t = "stream"
        create_table(self.ddb, t, "NEW_IMAGE")
        lagging = StreamReader(self.ddb, self.streams, t, "TRIM_HORIZON")
        following = StreamReader(self.ddb, self.streams, t, "TRIM_HORIZON")
        expected, latest, latest_from, counters = [], None, 0, set()
        live = []  # keys of items put by committed transactions, oldest first
        for i in range(400):
            actions = [
                put(t, {**key(f"p{i % 20}", f"n{i}"), "w": S(f"t{i}-put")}, "attribute_not_exists(pk)"),
                update(t, key("counter", str(i % 5)), "SET w = :w", {":w": S(f"t{i}-upd")}),
            ]
            writes = [
                ("INSERT", f"p{i % 20}", f"n{i}", f"t{i}-put"),
                ("MODIFY" if i % 5 in counters else "INSERT", "counter", str(i % 5), f"t{i}-upd"),
            ]
            if len(live) > 3:
                actions.append(delete(t, key(*live[0])))
                writes.append(("REMOVE", *live[0], None))
            fails = i % 7 == 3
            if fails:
                actions.insert(1 + i % 2, check(t, key("counter", "absent"), "attribute_exists(pk)"))
                with self.assertRaises(ClientError):
                    self.ddb.transact_write_items(TransactItems=actions)
            else:
                self.ddb.transact_write_items(TransactItems=actions)
                expected.extend(writes)
                counters.add(i % 5)
                if len(writes) == 3:
                    live.pop(0)
                live.append((f"p{i % 20}", f"n{i}"))
            if i % 10 == 9:
                following.drain(limit=7)
            if i in (100, 250):
                lagging.drain()
            if i == 199:
                latest = StreamReader(self.ddb, self.streams, t, "LATEST")
                latest_from = len(expected)
        for reader in (lagging, following, latest):
            reader.drain()
        self.assertEqual(lagging.writes(), expected)
        self.assertEqual(following.writes(), expected)
        self.assertEqual(latest.writes(), expected[latest_from:])
        for reader in (lagging, following, latest):
            numbers = reader.sequence_numbers()
            self.assertEqual(numbers, sorted(set(numbers)))
        # old records were trimmed: a new reader starts well after the first record, but the
        # shard still reports where it started and sequence numbers kept counting
        first = lagging.sequence_numbers()[0]
        fresh = StreamReader(self.ddb, self.streams, t, "TRIM_HORIZON")
        fresh.drain()
        self.assertGreater(fresh.sequence_numbers()[0], first + 500)
        self.assertEqual(fresh.sequence_numbers(), lagging.sequence_numbers()[-len(fresh.records):])
        arn = self.ddb.describe_table(TableName=t)["Table"]["LatestStreamArn"]
        shard = self.streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]
        self.assertEqual(int(shard["SequenceNumberRange"]["StartingSequenceNumber"]), first)

    def test_a_retried_read_gets_the_same_records(self):
        t = "retried"
        create_table(self.ddb, t)
        reader = StreamReader(self.ddb, self.streams, t, "TRIM_HORIZON")
        for i in range(20):
            self.ddb.put_item(TableName=t, Item={**key("r", i), "w": S(i)})
        old = reader.iterator
        first = self.streams.get_records(ShardIterator=old, Limit=20)["Records"]
        # the answer was "lost": many writes happen, the reader retries the old iterator
        for i in range(20, 200):
            self.ddb.put_item(TableName=t, Item={**key("r", i), "w": S(i)})
        again = self.streams.get_records(ShardIterator=old, Limit=20)["Records"]
        self.assertEqual([describe_record(r) for r in again], [describe_record(r) for r in first])
        self.assertEqual(len(first), 20)

    def test_an_unknown_iterator_is_reported_expired(self):
        with self.assertRaises(ClientError) as caught:
            self.streams.get_records(ShardIterator="not-an-iterator")
        self.assertEqual(caught.exception.response["Error"]["Code"], "ExpiredIteratorException")


class StreamRetentionTest(EmulatorTest):
    env = {"EMULATOR_STREAM_RETENTION_SECONDS": "1.5"}

    def test_records_past_retention_are_dropped_and_numbering_goes_on(self):
        t = "retention"
        create_table(self.ddb, t)
        reader = StreamReader(self.ddb, self.streams, t, "TRIM_HORIZON")
        for i in range(3):
            self.ddb.put_item(TableName=t, Item={**key("r", i), "w": S(i)})
        early = StreamReader(self.ddb, self.streams, t, "TRIM_HORIZON")
        early.drain()
        time.sleep(2)
        self.ddb.put_item(TableName=t, Item={**key("r", 3), "w": S(3)})
        reader.drain()
        self.assertEqual(reader.writes(), [("INSERT", "r", "3", "3")])
        self.assertEqual(reader.sequence_numbers(), [early.sequence_numbers()[0] + 3])


class ModelRegistryTest(EmulatorTest):
    def test_data_json_and_reset_still_work(self):
        ses = self.emulator.client("ses")
        ses.verify_email_identity(EmailAddress="from@example.com")
        ses.send_email(
            Source="from@example.com",
            Destination={"ToAddresses": ["to@example.com"]},
            Message={"Subject": {"Data": "hello"}, "Body": {"Text": {"Data": "registry"}}},
        )
        sns = self.emulator.client("sns")
        topic = sns.create_topic(Name="t")["TopicArn"]
        sns.publish(TopicArn=topic, Message="note")
        create_table(self.ddb, "registry")
        self.ddb.put_item(TableName="registry", Item={**key("a", "b"), "w": S("x")})
        self.ddb.query(TableName="registry", KeyConditionExpression="pk = :p",
                       ExpressionAttributeValues={":p": S("a")})
        data = self.emulator.get_json("/moto-api/data.json")
        self.assertEqual([m["body"] for m in data["ses"]["Message"]], ["registry"])
        self.assertEqual(len(data["sns"]["Topic"]), 1)
        self.assertEqual(data["dynamodb"]["Item"], [])  # DynamoDB models are not tracked
        self.emulator.post("/moto-api/reset")
        data = self.emulator.get_json("/moto-api/data.json")
        self.assertEqual(data["ses"]["Message"], [])
        self.assertEqual(self.ddb.list_tables()["TableNames"], [])
        # everything works after a reset, and still without tracking DynamoDB items
        create_table(self.ddb, "again")
        reader = StreamReader(self.ddb, self.streams, "again", "TRIM_HORIZON")
        self.ddb.transact_write_items(TransactItems=[put("again", {**key("a", "b"), "w": S("y")})])
        self.assertEqual(reader.drain()[0]["dynamodb"]["NewImage"]["w"], S("y"))
        self.assertEqual(self.emulator.get_json("/moto-api/data.json")["dynamodb"]["Item"], [])


class MemoryTest(EmulatorTest):
    PRELOAD = 3000
    TRANSACTIONS = 3000
    RSS_BOUND_MB = 150

    def test_memory_and_transaction_time_stay_flat(self):
        t = "big"
        create_table(self.ddb, t)
        padding = "x" * 200
        for start in range(0, self.PRELOAD, 25):
            self.ddb.batch_write_item(RequestItems={t: [
                {"PutRequest": {"Item": {**key(f"u{i % 50}", f"s{i}"), "gpk": S(f"g{i % 10}"),
                                         "gsk": S(i), "v": {"N": "0"}, "pad": S(padding)}}}
                for i in range(start, start + 25)
            ]})
        reader = StreamReader(self.ddb, self.streams, t, "LATEST")

        def transaction(i):
            j = (i * 7) % self.PRELOAD
            actions = [
                put(t, {**key(f"m{i % 100}", f"n{i}"), "gpk": S(f"g{i % 10}"), "gsk": S(f"n{i}"),
                        "pad": S(padding)}, "attribute_not_exists(pk)"),
                update(t, key(f"u{j % 50}", f"s{j}"), "SET v = v + :one", {":one": {"N": "1"}}),
            ]
            if i % 10 == 0:
                actions.append(check(t, key("nobody", "none"), "attribute_exists(pk)"))
            started = time.perf_counter()
            try:
                self.ddb.transact_write_items(TransactItems=actions)
            except ClientError as e:
                if i % 10 != 0:
                    raise
                self.assertEqual(e.response["Error"]["Code"], "TransactionCanceledException")
            return time.perf_counter() - started

        for i in range(200):  # warm up
            transaction(-1 - i)
        reader.drain(limit=1000)
        baseline = self.emulator.rss_mb()
        times, growth = [], 0.0
        for i in range(self.TRANSACTIONS):
            times.append(transaction(i))
            if i % 100 == 99:
                reader.drain(limit=1000)
                growth = self.emulator.rss_mb() - baseline
                if growth > self.RSS_BOUND_MB:
                    break  # fail now rather than exhaust the machine
        first = statistics.median(times[:300])
        last = statistics.median(times[-300:])
        print(
            f"\n  {len(times)} transactions on {self.PRELOAD}+ items: RSS {baseline:.0f} MB -> "
            f"+{growth:.0f} MB; median per transaction first 300 {first * 1000:.1f} ms, "
            f"last 300 {last * 1000:.1f} ms",
            file=sys.stderr,
        )
        self.assertLess(growth, self.RSS_BOUND_MB, f"RSS grew by {growth:.0f} MB after {len(times)} transactions")
        self.assertEqual(len(times), self.TRANSACTIONS)
        self.assertLess(last, first * 1.5 + 0.005, "per-transaction time grows with the table")
        committed = sum(1 for i in range(self.TRANSACTIONS) if i % 10 != 0)
        self.assertEqual(len(reader.records), 2 * committed + 2 * 180)


if __name__ == "__main__":
    unittest.main()
