"""moto's server, with each DynamoDB request applied atomically.

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
