#!/usr/bin/env bash
# The pages and API against their physical limits on this machine, measured in one run:
# - each public page from the optimised server, and the very same HTML bytes served as files
#   by nginx (the fastest a page can leave this machine);
# - GET /api/v1/projects with 100 projects, and pgbench running that endpoint's SQL;
# - the server's memory idle, after the load, and at 200 connections.
# The catalogue holds 500 published templates. wrk: 2 threads, CONNS connections, DURATION
# seconds per route, loopback. nginx-light, wrk and pgbench are installed when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${CARGO_TARGET_DIR:-target}"
BIN="$TARGET/release/roundhouse"
PORT="${BENCH_PORT:-3900}"
NGINX_PORT="${BENCH_NGINX_PORT:-3901}"
DURATION="${DURATION:-10}"
CONNS="${CONNS:-64}"
need() { command -v "$1" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }; }
need wrk wrk
need nginx nginx-light
need pgbench postgresql-contrib
[ -x "$BIN" ] || { echo "build it first: make release"; exit 1; }

WORK="$(mktemp -d)"
DB_URL="$(./scripts/local-pg.sh roundhouse_bench)"
# A fresh database each run: the same 500 templates and 100 projects every time.
psql -q "$DB_URL" -c "DROP SCHEMA public CASCADE; CREATE SCHEMA public;" >/dev/null 2>&1 || true
DATABASE_URL="$DB_URL" ROUNDHOUSE_ADDR="127.0.0.1:$PORT" ROUNDHOUSE_DATA_DIR="$WORK/data" ROUNDHOUSE_RUNTIME=none \
  ROUNDHOUSE_DEV_ADMIN_EMAIL="" ROUNDHOUSE_LOGIN_PER_IP_PER_MINUTE=100000 ROUNDHOUSE_ACCOUNT_ACTIONS_PER_IP_PER_HOUR=100000 \
  LEPTOS_OUTPUT_NAME=roundhouse LEPTOS_SITE_ROOT="$TARGET/site" LEPTOS_SITE_PKG_DIR=pkg RUST_LOG=warn \
  "$BIN" >"$WORK/server.log" 2>&1 &
PID=$!
cleanup() { kill "$PID" 2>/dev/null || true; [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null || { echo "the server did not start:"; cat "$WORK/server.log"; exit 1; }
rss() { awk '/VmRSS/ {printf "%.1f MB", $2 / 1024}' "/proc/$PID/status"; }
IDLE_RSS="$(rss)"

# 500 published templates (the bundled ones and copies of postgres's), and a user with 100
# projects and an API token.
psql -q "$DB_URL" >/dev/null <<'SQL'
INSERT INTO templates (slug, name, summary, description, category, spec, tags, keywords, readme, origin, version, published)
SELECT 'bench-' || i, 'Bench template ' || i, summary || ' (' || i || ')', description, category, spec, tags, keywords, readme, 'admin', 1, true
FROM templates, generate_series(1, 500 - (SELECT count(*) FROM templates WHERE published)) AS i WHERE slug = 'postgresql';
UPDATE plans SET max_projects = 1000 WHERE id = 'free';
SQL
[ "$(psql -tA "$DB_URL" -c "SELECT count(*) FROM templates WHERE published")" = 500 ] || { echo "seeding the templates failed"; exit 1; }
api() { curl -sf -X "$1" "http://127.0.0.1:$PORT/api/v1$2" -H 'content-type: application/json' ${TOKEN:+-H "authorization: Bearer $TOKEN"} ${3:+-d "$3"}; }
api POST /auth/register '{"name":"Bench","email":"bench@example.com","password":"bench-password-1"}' >/dev/null
VERIFY=$(psql -tA "$DB_URL" -c "SELECT substring(body from 'token=([A-Za-z0-9_-]+)') FROM mail_outbox WHERE to_address = 'bench@example.com' ORDER BY created_at DESC LIMIT 1")
api POST /auth/verify "{\"token\":\"$VERIFY\"}" >/dev/null
TOKEN=$(api POST /auth/login '{"email":"bench@example.com","password":"bench-password-1"}' | sed -E 's/.*"token":"([^"]+)".*/\1/')
for i in $(seq 1 100); do api POST /projects "{\"name\":\"project-$i\"}" >/dev/null; done
OWNER=$(psql -tA "$DB_URL" -c "SELECT id FROM users WHERE email = 'bench@example.com'")
[ "$(psql -tA "$DB_URL" -c "SELECT count(*) FROM projects WHERE owner_id = '$OWNER'")" = 100 ] || { echo "seeding the projects failed"; exit 1; }

# nginx serving each page's bytes as the server sent them, from files.
ROUTES=(/ /pricing /templates /templates/postgresql /docs)
for route in "${ROUTES[@]}"; do
  mkdir -p "$WORK/www$route"
  curl -sf "http://127.0.0.1:$PORT$route" -o "$WORK/www$route/index.html"
done
cat >"$WORK/nginx.conf" <<CONF
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 4096; }
http {
  access_log off;
  default_type text/html;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    root $WORK/www;
    location / { try_files \$uri/index.html =404; }
  }
}
CONF
nginx -c "$WORK/nginx.conf"

bench() { # url [header] → "req/s p99"
  local out
  out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency ${2:+-H "$2"} "$1")
  echo "$(echo "$out" | awk '/Requests\/sec/ {printf "%d", $2}') $(echo "$out" | awk '$1=="99%" {print $2}')"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f×", (b > 0 ? a / b : 0) }'; }

printf '| %-22s | %-24s | %-22s | %-6s | %-22s |\n' what Roundhouse "limit, same run" ratio goal
printf '|%s|%s|%s|%s|%s|\n' "------------------------" "--------------------------" "------------------------" "--------" "------------------------"
for route in "${ROUTES[@]}"; do
  read -r rps p99 < <(bench "http://127.0.0.1:$PORT$route")
  read -r nrps _ < <(bench "http://127.0.0.1:$NGINX_PORT$route")
  goal="≥ 0.30×"
  [ "$route" = /templates ] && goal="≥ 0.30×, p99 ≤ 20 ms"
  printf '| %-22s | %-24s | %-22s | %-6s | %-22s |\n' "\`$route\`" "$rps req/s, p99 $p99" "nginx: $nrps req/s" "$(ratio "$rps" "$nrps")" "$goal"
done

# The list endpoint against its own SQL, as pgbench runs it.
read -r rps p99 < <(bench "http://127.0.0.1:$PORT/api/v1/projects" "authorization: Bearer $TOKEN")
cat >"$WORK/projects.sql" <<SQL
SELECT p.id, p.name, p.description, p.created_at, p.updated_at,
       (SELECT count(*) FROM environments e WHERE e.project_id = p.id) AS environment_count
FROM projects p WHERE p.owner_id = '$OWNER' ORDER BY p.updated_at DESC;
SQL
TPS=$(pgbench -n -M prepared -c "$CONNS" -j 2 -T "$DURATION" -f "$WORK/projects.sql" "$DB_URL" 2>/dev/null | awk '/^tps/ {printf "%d", $3}')
printf '| %-22s | %-24s | %-22s | %-6s | %-22s |\n' "\`GET /api/v1/projects\` (100)" "$rps req/s, p99 $p99" "pgbench: $TPS tps" "$(ratio "$rps" "$TPS")" "≥ 0.50×"

AFTER_RSS="$(rss)"
wrk -t2 -c200 -d"${DURATION}s" "http://127.0.0.1:$PORT/templates" >/dev/null &
WRK=$!
sleep $((DURATION / 2))
AT_200="$(rss)"
wait "$WRK"
echo
echo "Server RSS: $IDLE_RSS idle (goal ≤ 20 MB), $AFTER_RSS after the load above, $AT_200 at 200 connections (goal ≤ 60 MB)."
PKG="$TARGET/site/pkg"
size() { [ -f "$1" ] && stat -c %s "$1" || echo 0; }
echo "Dashboard bundle: wasm $(size "$PKG/roundhouse.wasm") bytes raw, $(size "$PKG/roundhouse.wasm.br") brotli, $(size "$PKG/roundhouse.wasm.gz") gzip (goal ≤ 350 KB compressed)."
