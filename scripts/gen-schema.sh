#!/usr/bin/env bash
# Regenerates server/src/db/schema.rs from the PostgreSQL migrations, in a scratch
# database. Needs diesel_cli (cargo install diesel_cli --no-default-features --features postgres)
# and a PostgreSQL server (PGURL, default postgres://postgres@127.0.0.1:5432).
set -euo pipefail
cd "$(dirname "$0")/.."
base="${PGURL:-postgres://postgres@127.0.0.1:5432}"
db="coopsync_schema_$$"
psql "$base/postgres" -qc "CREATE DATABASE $db"
trap 'psql "$base/postgres" -qc "DROP DATABASE IF EXISTS $db"' EXIT
DATABASE_URL="$base/$db" diesel migration run --migration-dir migrations/postgres
DATABASE_URL="$base/$db" diesel print-schema > server/src/db/schema.rs
echo "schema.rs regenerated"
