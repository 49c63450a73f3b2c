#!/usr/bin/env bash
# Runs docs/examples/js-client against a real coopsync server on a loopback port, with
# a fresh SQLite database. Used by .ci/run; needs Node.js 20+, npm and a built binary.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${COOPSYNC_BIN:-target/debug/coopsync}"
# `cargo test` builds the same program as coopsync-cli (tests crate); use it if present.
[ -x "$bin" ] || bin=target/debug/coopsync-cli
[ -x "$bin" ] || { cargo build -p coopsync-server; bin=target/debug/coopsync; }
work=$(mktemp -d)
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
password="js-example-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
(cd "$work" && printf '%s\n' "$password" | "$OLDPWD/$bin" user add --username js.enumerator --role enumerator --province 07 --password-stdin)
(cd "$work" && COOPSYNC_LOG=warn exec "$OLDPWD/$bin" serve --bind 127.0.0.1:0 2> server.log) &
server_pid=$!
addr=""
for _ in $(seq 1 100); do
    addr=$(grep -o 'listening on http://[0-9.:]*' "$work/server.log" 2>/dev/null | head -n 1 | sed 's/listening on //') || true
    [ -n "$addr" ] && break
    sleep 0.1
done
[ -n "$addr" ] || { echo "server did not start"; cat "$work/server.log"; exit 1; }
cd docs/examples/js-client
npm ci --no-audit --no-fund --silent
COOPSYNC_PASSWORD="$password" node client.mjs --server "$addr" --username js.enumerator --province 07
