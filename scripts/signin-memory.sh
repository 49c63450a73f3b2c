#!/usr/bin/env bash
# Sign-in memory (issue 17, docs/performance.md "Sign-in memory"): 100 sign-ins, 8 at
# once, against a fresh server; prints the server's peak and current RSS before and
# after. Usage: scripts/signin-memory.sh DATABASE_URL [BINARY]
#   scripts/signin-memory.sh /tmp/signin.db
#   scripts/signin-memory.sh postgres://postgres@127.0.0.1:5432/signin
# The database must be new (a SQLite path that does not exist, an empty PostgreSQL
# database). Needs curl.
set -euo pipefail
db="$1"
bin="${2:-$(dirname "$0")/../target/release/coopsync}"
port="${PORT:-18099}"
export COOPSYNC_DATABASE_URL="$db" COOPSYNC_LOG=warn COOPSYNC_LOGIN_MAX_FAILURES_PER_IP=100000
"$bin" migrate >/dev/null
for i in 1 2 3 4 5 6 7 8; do
  echo "password-number-$i" | "$bin" user add --username "mem$i" --role enumerator \
    --province 07 --password-stdin >/dev/null
done
"$bin" serve --bind "127.0.0.1:$port" >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.2; done
rss() { grep -E "VmHWM|VmRSS" "/proc/$pid/status" | tr -s ' \t\n' ' '; }
echo "idle:  $(rss)"
seq 100 | xargs -P 8 -I{} sh -c 'i=$(( ({} % 8) + 1 )); curl -s -o /dev/null -w "%{http_code}\n" \
  -H "content-type: application/json" \
  -d "{\"username\":\"mem$i\",\"password\":\"password-number-$i\",\"device_id\":\"$(cat /proc/sys/kernel/random/uuid)\",\"device_name\":\"t{}\"}" \
  http://127.0.0.1:'"$port"'/api/v1/auth/login' | sort | uniq -c | sed 's/^ */statuses: /'
echo "after: $(rss)"
