# Sourced by the scripts that need a real server: `serve_in DIR BIN LOGLEVEL` starts
# `BIN serve` on a loopback port with DIR as its working directory (SQLite file there),
# sets $server_pid and $addr (http://127.0.0.1:PORT) once it listens, or exits 1.
serve_in() {
    (cd "$1" && COOPSYNC_LOG="$3" exec "$2" serve --bind 127.0.0.1:0 2> server.log) &
    server_pid=$!
    addr=""
    for _ in $(seq 1 100); do
        addr=$(grep -o 'listening on http://[0-9.:]*' "$1/server.log" 2>/dev/null | head -n 1 | sed 's/listening on //') || true
        [ -n "$addr" ] && return 0
        sleep 0.1
    done
    echo "server did not start"
    cat "$1/server.log"
    exit 1
}
