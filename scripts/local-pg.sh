#!/usr/bin/env bash
# Ensures a PostgreSQL server for Roundhouse and prints its DATABASE_URL on stdout.
#
# - DATABASE_URL already set: printed as is, nothing else happens.
# - `local-pg.sh --stop` stops the project-local cluster.
# - Otherwise a project-local cluster under $ROUNDHOUSE_DATA_DIR/postgres (default .data/postgres)
#   listens on 127.0.0.1:$ROUNDHOUSE_PG_PORT (default 5433). It is created on first use, started
#   when stopped and reused afterwards. Missing server binaries are installed with apt when root.
#   Connections over TCP need the password kept in $ROUNDHOUSE_DATA_DIR/pg-password (mode 0600,
#   generated once; scram-sha-256); only the postgres system user may use the socket, which is
#   how this script itself creates databases. A cluster made by an older version of this script
#   with `trust` is switched to passwords.
set -euo pipefail

DB_NAME="${1:-roundhouse}"
if [ "$DB_NAME" = "--stop" ]; then
  DB_NAME=""
elif [ -n "${DATABASE_URL:-}" ]; then
  echo "$DATABASE_URL"
  exit 0
fi

log() { echo "local-pg: $*" >&2; }
DATA_ROOT="$(mkdir -p "${ROUNDHOUSE_DATA_DIR:-.data}" && cd "${ROUNDHOUSE_DATA_DIR:-.data}" && pwd)"
PGDATA="$DATA_ROOT/postgres"
SOCKDIR="$DATA_ROOT/pg-socket"
PORT="${ROUNDHOUSE_PG_PORT:-5433}"

find_bindir() {
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir; return
  fi
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
    [ -x "$d/initdb" ] && { echo "$d"; return; }
  done
  if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return; fi
  return 1
}

BINDIR="$(find_bindir || true)"
if [ -z "$BINDIR" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "PostgreSQL server binaries not found; installing the postgresql package with apt"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
    BINDIR="$(find_bindir)"
  else
    log "PostgreSQL server binaries (initdb, pg_ctl) are missing: install the 'postgresql' package, or set DATABASE_URL"
    exit 1
  fi
fi

# initdb and postgres refuse to run as root: run them as the postgres system user then.
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

if [ -z "$DB_NAME" ]; then
  if [ -f "$PGDATA/postmaster.pid" ] && [ -n "$BINDIR" ]; then
    as_pg "$BINDIR/pg_ctl" -D "$PGDATA" -m fast -w stop >&2 || true
  fi
  exit 0
fi

mkdir -p "$PGDATA" "$SOCKDIR"
if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$PGDATA" "$SOCKDIR"; chmod 700 "$PGDATA" "$SOCKDIR"; fi

PWFILE="$DATA_ROOT/pg-password"
if [ ! -s "$PWFILE" ]; then
  (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$PWFILE")
fi
chmod 600 "$PWFILE"
PASSWORD="$(cat "$PWFILE")"

if [ ! -f "$PGDATA/PG_VERSION" ]; then
  log "creating a project-local cluster in $PGDATA"
  # initdb reads the password from a file the postgres user can read, gone right after.
  PWTMP="$(mktemp)"; printf '%s' "$PASSWORD" > "$PWTMP"
  if [ "$(id -u)" = 0 ]; then chown postgres "$PWTMP"; fi
  as_pg "$BINDIR/initdb" -D "$PGDATA" -U postgres --auth-local=peer --auth-host=scram-sha-256 --pwfile="$PWTMP" \
    --encoding=UTF8 --locale=C.UTF-8 >/dev/null 2>&1 \
    || as_pg "$BINDIR/initdb" -D "$PGDATA" -U postgres --auth-local=peer --auth-host=scram-sha-256 --pwfile="$PWTMP" --encoding=UTF8 >&2
  rm -f "$PWTMP"
elif grep -qE '^[^#]*\btrust\b' "$PGDATA/pg_hba.conf"; then
  log "switching the project-local cluster from trust to passwords"
  as_pg tee "$PGDATA/pg_hba.conf" >/dev/null <<HBA
# Written by scripts/local-pg.sh: the socket for the postgres system user, passwords over TCP.
local   all   postgres                  peer
host    all   all        127.0.0.1/32   scram-sha-256
host    all   all        ::1/128        scram-sha-256
HBA
  NEEDS_PASSWORD=1
fi

if ! as_pg "$BINDIR/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    log "port $PORT is taken by another server: set ROUNDHOUSE_PG_PORT to a free port, or DATABASE_URL"
    exit 1
  fi
  log "starting PostgreSQL on 127.0.0.1:$PORT"
  as_pg "$BINDIR/pg_ctl" -D "$PGDATA" -w -t 60 -l "$PGDATA/server.log" \
    -o "-p $PORT -k $SOCKDIR -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off -c full_page_writes=off" start >&2
fi

for _ in $(seq 1 60); do
  as_pg "$BINDIR/pg_isready" -q -h 127.0.0.1 -p "$PORT" && break
  sleep 0.5
done

# Over the socket as the postgres system user (peer), never over TCP without the password.
PSQL=(as_pg "$BINDIR/psql" -h "$SOCKDIR" -p "$PORT" -U postgres -v ON_ERROR_STOP=1 -qtA)
if [ -n "${NEEDS_PASSWORD:-}" ]; then
  as_pg "$BINDIR/pg_ctl" -D "$PGDATA" reload >/dev/null
  "${PSQL[@]}" -c "ALTER USER postgres PASSWORD '$PASSWORD'" postgres >/dev/null
fi

if ! "${PSQL[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" postgres | grep -q 1; then
  as_pg "$BINDIR/createdb" -h "$SOCKDIR" -p "$PORT" -U postgres "$DB_NAME"
fi

echo "postgres://postgres:$PASSWORD@127.0.0.1:$PORT/$DB_NAME"
