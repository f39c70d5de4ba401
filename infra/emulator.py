"""moto's server, with each DynamoDB request applied atomically and streams that survive
failed transactions.

Real DynamoDB applies every request (a conditional put, a transaction) atomically. moto's
threaded server does not: a transaction snapshots whole tables and restores them on failure,
and conditional writes check then write, all without a lock, so concurrent requests can
overwrite each other inside the emulator. Serialising DynamoDB requests restores the
semantics the race tests rely on; other services stay concurrent (SQS long polls must not
block the table).

Usage: python infra/emulator.py [-H 127.0.0.1] [-p PORT]
"""

import argparse
import os
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

_DYNAMODB = threading.Lock()


def read_streams_from_the_live_table():
    """A failed transaction restores a snapshot of the table, stream shard included, so a
    shard iterator holding the old shard object would read the failed transaction's records
    and then nothing new. Resolve the table's current shard on every read instead."""
    from moto.dynamodbstreams import models as streams

    original = streams.ShardIterator.get

    def get(self, limit=1000):
        table = self.streams_backend.dynamodb.tables.get(self.stream_shard.table.name)
        if table is not None and table.stream_shard is not None:
            self.stream_shard = table.stream_shard
        return original(self, limit)

    streams.ShardIterator.get = get


def serialise_dynamodb(app):
    def wrapped(environ, start_response):
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target.startswith("DynamoDB_") or target.startswith("DynamoDBStreams_"):
            with _DYNAMODB:
                return list(app(environ, start_response))
        return app(environ, start_response)

    return wrapped


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=4566)
    args = parser.parse_args()
    read_streams_from_the_live_table()
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
