#!/usr/bin/env bash
# Runs a command with the AWS emulator (moto, from the project virtualenv, see emulator.py) on a free loopback port,
# exporting AWS_ENDPOINT_URL and test credentials for it; stops the server afterwards.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
port="${MOTO_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
log="${MOTO_LOG:-$here/target/moto-$port.log}"
mkdir -p "$(dirname "$log")"
"$here/.venv/bin/python" "$here/infra/emulator.py" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
pid=$!
# The emulator ends with this script however it ends: normally, on Ctrl-C, or when told to stop
# (and on its own if this script is killed outright: see emulator.py's parent watch).
stop() { kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; }
trap stop EXIT
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$port/moto-api/" >/dev/null 2>&1; then break; fi
  if ! kill -0 $pid 2>/dev/null; then echo "moto failed to start; see $log" >&2; exit 1; fi
  sleep 0.2
done
export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
# The command runs in the background so that a signal reaches this script at once (bash runs
# traps only between commands): Ctrl-C, SIGTERM or SIGHUP is passed on to the command as SIGTERM
# (local-stack dev stops cleanly on it), then the emulator is stopped.
"$@" <&0 &
child=$!
forward() { kill -TERM "$child" 2>/dev/null || true; wait "$child" 2>/dev/null || true; exit "$1"; }
trap 'forward 130' INT
trap 'forward 143' TERM HUP
set +e
wait "$child"
exit $?
