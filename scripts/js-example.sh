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
# shellcheck source=scripts/serve-lib.sh
. scripts/serve-lib.sh
serve_in "$work" "$PWD/$bin" warn
cd docs/examples/js-client
npm ci --no-audit --no-fund --silent
COOPSYNC_PASSWORD="$password" node client.mjs --server "$addr" --username js.enumerator --province 07
