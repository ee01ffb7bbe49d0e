#!/usr/bin/env bash
# Makes a PostgreSQL server available to the tests and exports its admin URL as
# KEFU_TEST_POSTGRES (the tests create and drop a database of their own in it).
#
# Sourced by deploy/test.sh. A server that already answers at KEFU_TEST_POSTGRES (or at
# postgres://postgres@127.0.0.1:5432/test) is used as it is. Otherwise a private
# cluster is made in a temporary directory, on a free loopback port, with trust
# authentication for local connections only, and stopped and removed when the
# sourcing shell exits: no system service, nothing left behind.

kefu_pg_answers() {
  command -v psql >/dev/null && psql "$1" -Atqc 'select 1' >/dev/null 2>&1
}

kefu_pg_stop() {
  [ -n "${KEFU_PG_DIR:-}" ] || return 0
  if [ -f "$KEFU_PG_DIR/data/postmaster.pid" ]; then
    kefu_pg_as "$KEFU_PG_BIN/pg_ctl" -D "$KEFU_PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$KEFU_PG_DIR"
  KEFU_PG_DIR=""
}

# initdb and postgres refuse to run as root: as root, the cluster belongs to the
# `postgres` account that Debian's package creates.
kefu_pg_as() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

kefu_pg_start() {
  local url="${KEFU_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}"
  if kefu_pg_answers "$url"; then
    export KEFU_TEST_POSTGRES="$url"
    echo "test-postgres: using the server at $url"
    return 0
  fi
  KEFU_PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  if [ -z "$KEFU_PG_BIN" ] || [ ! -x "$KEFU_PG_BIN/initdb" ]; then
    echo "test-postgres: no PostgreSQL answers at $url and none is installed; run deploy/setup.sh" >&2
    return 1
  fi
  KEFU_PG_DIR="$(mktemp -d /tmp/kefu-pg.XXXXXX)"
  chmod 755 "$KEFU_PG_DIR"
  [ "$(id -u)" -ne 0 ] || chown postgres: "$KEFU_PG_DIR"
  trap kefu_pg_stop EXIT
  kefu_pg_as "$KEFU_PG_BIN/initdb" -D "$KEFU_PG_DIR/data" -U postgres -A trust \
    --no-sync -E UTF8 --locale C.UTF-8 >"$KEFU_PG_DIR/initdb.log" 2>&1 || {
    cat "$KEFU_PG_DIR/initdb.log" >&2
    return 1
  }
  # A port nobody listens on; a clash at start is retried on another.
  local port started=""
  for port in $(shuf -i 40000-49999 -n 5); do
    if kefu_pg_as "$KEFU_PG_BIN/pg_ctl" -D "$KEFU_PG_DIR/data" -w -t 60 \
      -l "$KEFU_PG_DIR/server.log" \
      -o "-p $port -c listen_addresses=127.0.0.1 -k $KEFU_PG_DIR -c fsync=off -c max_connections=300" \
      start >/dev/null 2>&1; then
      started=$port
      break
    fi
  done
  if [ -z "$started" ]; then
    echo "test-postgres: the private cluster did not start:" >&2
    tail -n 20 "$KEFU_PG_DIR/server.log" >&2
    return 1
  fi
  export KEFU_TEST_POSTGRES="postgres://postgres@127.0.0.1:$started/postgres"
  echo "test-postgres: private cluster in $KEFU_PG_DIR on 127.0.0.1:$started (stopped on exit)"
}
