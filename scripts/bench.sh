#!/usr/bin/env bash
# Throughput and latency of key routes, and the server's memory, against the optimised binary
# and the project-local PostgreSQL. Loopback only; each run is bounded (DURATION seconds per route).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${CARGO_TARGET_DIR:-target}"
BIN="$TARGET/release/roundhouse"
PORT="${BENCH_PORT:-3900}"
DURATION="${DURATION:-10}"
CONNS="${CONNS:-64}"
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
[ -x "$BIN" ] || { echo "build it first: make release"; exit 1; }

DATABASE_URL="$(./scripts/local-pg.sh roundhouse_bench)" ROUNDHOUSE_ADDR="127.0.0.1:$PORT" ROUNDHOUSE_DATA_DIR="$(mktemp -d)" \
  LEPTOS_OUTPUT_NAME=roundhouse LEPTOS_SITE_ROOT="$TARGET/site" LEPTOS_SITE_PKG_DIR=pkg RUST_LOG=warn \
  "$BIN" >/tmp/roundhouse-bench.log 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print $2 " kB"}' "/proc/$PID/status"; }
echo "server RSS idle: $(rss)"
printf '%-22s %12s %10s %10s\n' route req/s p50 p99
for route in / /pricing /templates /templates/postgres /api/v1/plans /api/v1/templates /healthz; do
  out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$PORT$route")
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  printf '%-22s %12s %10s %10s\n' "$route" "$rps" "$p50" "$p99"
done
echo "server RSS after load: $(rss)"
