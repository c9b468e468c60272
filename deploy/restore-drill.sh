#!/usr/bin/env bash
# Restore drill: prove last night's kind of backup can be restored and is a sound ledger.
#
#   deploy/restore-drill.sh [DATABASE_URL]
#
# 1. pg_dump -Fc the database (DATABASE_URL, default $FEISHUI_DATABASE_URL; a SQLAlchemy URL
#    such as postgresql+psycopg://feishui@db/feishui, or a plain postgresql:// URL);
#    or, with DUMP_FILE=path set, skip the dump and drill that file (e.g. the real backup);
# 2. create a scratch database beside it (feishui_restore_drill_<time>) and pg_restore into it;
# 3. run `feishui ledger verify` and `feishui ledger trial-balance` against the restored copy;
# 4. drop the scratch database (KEEP_SCRATCH=1 keeps it) and exit non-zero if any step failed.
#
# Needs pg_dump, pg_restore, psql (same major version as the server or newer) and feishui
# (FEISHUI_BIN, default `feishui` on PATH). The role must be allowed to CREATE DATABASE.
set -euo pipefail

SOURCE_URL="${1:-${FEISHUI_DATABASE_URL:-}}"
FEISHUI_BIN="${FEISHUI_BIN:-feishui}"
if [[ -z "$SOURCE_URL" ]]; then
  echo "restore-drill: give a database URL or set FEISHUI_DATABASE_URL" >&2
  exit 2
fi

# postgresql+psycopg://u@h:5432/db?x=y -> base (postgresql://u@h:5432), db, query
pattern='^postgres(ql)?(\+[A-Za-z0-9_]+)?://([^/]*)/([^?]+)(\?.*)?$'
if [[ ! "$SOURCE_URL" =~ $pattern ]]; then
  echo "restore-drill: not a PostgreSQL URL with a database name" >&2
  exit 2
fi
authority="${BASH_REMATCH[3]}"
source_db="${BASH_REMATCH[4]}"
query="${BASH_REMATCH[5]:-}"
libpq() { echo "postgresql://${authority}/$1${query}"; }
scratch_db="${SCRATCH_DB:-feishui_restore_drill_$(date -u +%Y%m%d%H%M%S)_$$}"
workdir="$(mktemp -d)"
dump="${DUMP_FILE:-$workdir/feishui.dump}"

step() { echo "restore-drill: $*" >&2; }
cleanup() {
  local status=$?
  if [[ "${KEEP_SCRATCH:-0}" != "1" ]]; then
    psql -X -q -v ON_ERROR_STOP=1 "$(libpq postgres)" \
      -c "DROP DATABASE IF EXISTS \"$scratch_db\" WITH (FORCE)" >/dev/null 2>&1 || true
  else
    step "kept scratch database $scratch_db"
  fi
  rm -rf "$workdir"
  if [[ $status -eq 0 ]]; then step "PASSED"; else step "FAILED (exit $status)"; fi
}
trap cleanup EXIT

if [[ -z "${DUMP_FILE:-}" ]]; then
  step "dumping $source_db (custom format)"
  pg_dump --format=custom --no-owner --no-privileges --file="$dump" "$(libpq "$source_db")"
fi
step "creating scratch database $scratch_db"
psql -X -q -v ON_ERROR_STOP=1 "$(libpq postgres)" -c "CREATE DATABASE \"$scratch_db\""
step "restoring into $scratch_db"
pg_restore --exit-on-error --no-owner --no-privileges --dbname="$(libpq "$scratch_db")" "$dump"

scratch_url="postgresql+psycopg://${authority}/${scratch_db}${query}"
step "feishui ledger verify (restored copy)"
FEISHUI_DATABASE_URL="$scratch_url" "$FEISHUI_BIN" ledger verify
step "feishui ledger trial-balance (restored copy)"
FEISHUI_DATABASE_URL="$scratch_url" "$FEISHUI_BIN" ledger trial-balance
