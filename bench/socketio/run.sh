#!/usr/bin/env bash
# vigil --profile socketio vs the Node socket.io server: same clients, same fan-out job.
#
#   bench/socketio/run.sh                     # N=1000, runs (a) and (b), twice each, both servers
#   NS="1000 5000" RUNS=2 MODES="a b" bench/socketio/run.sh
#
# (a) M_A messages (default 1000) at RATE_A/s (default 100): latency p50/p99
# (b) M_B messages (default 2000) as fast as possible: deliveries/s
# Every run gets a freshly started server (so its RSS with 0 clients is a clean baseline), which is
# stopped afterwards. Results: one JSON line per run in $OUT (default bench/socketio/results.jsonl),
# then a table.
set -euo pipefail
cd "$(dirname "$0")"

VIGIL=${VIGIL:-/work/main/build/vigil}
[ -x "$VIGIL" ] || VIGIL=/work/main/build-bench/vigil
NS=${NS:-1000}
RUNS=${RUNS:-2}
MODES=${MODES:-"a b"}
TARGETS=${TARGETS:-"vigil ref"}
M_A=${M_A:-1000}
RATE_A=${RATE_A:-100}
M_B=${M_B:-2000}
PROCS=${PROCS:-2}
PAYLOAD=${PAYLOAD:-256}
VPORT=${VPORT:-18790}
RPORT=${RPORT:-18791}
KEY=bench-key
OUT=${OUT:-$PWD/results.jsonl}

[ -d node_modules/socket.io ] || npm ci --no-audit --no-fund
ulimit -n 65536 2>/dev/null || true

SPID=
DATA=
stop_server() {
  if [ -n "$SPID" ] && kill -0 "$SPID" 2>/dev/null; then
    kill "$SPID"
    for _ in $(seq 50); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$SPID" 2>/dev/null && kill -9 "$SPID"
    wait "$SPID" 2>/dev/null || true
  fi
  SPID=
  if [ -n "$DATA" ]; then rm -rf "$DATA"; DATA=; fi
}
trap stop_server EXIT INT TERM

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "server on port $1 did not start" >&2
  return 1
}

start_server() { # target n
  if [ "$1" = vigil ]; then
    DATA=$(mktemp -d /tmp/vigil-bench-sio.XXXXXX)
    "$VIGIL" serve --listen "127.0.0.1:$VPORT" --workers 2 --api-key "$KEY" --profile socketio \
      --socketio-events 'bench.>=tick' --data-dir "$DATA" --log-level warning \
      --max-connections-per-user $(( $2 + 100 )) &
    SPID=$!
    wait_port "$VPORT"
    URL=http://127.0.0.1:$VPORT
  else
    node reference-server.mjs "$RPORT" &
    SPID=$!
    wait_port "$RPORT"
    URL=http://127.0.0.1:$RPORT
  fi
  sleep 1
}

echo "# $(date -Is) $(nproc) cores, loadavg $(cut -d' ' -f1-3 /proc/loadavg), node $(node --version)," \
  "socket.io $(node -p "require('./node_modules/socket.io/package.json').version")," \
  "socket.io-client $(node -p "require('./node_modules/socket.io-client/package.json').version")" | tee -a "$OUT"

for n in $NS; do
  for mode in $MODES; do
    for run in $(seq "$RUNS"); do
      for target in $TARGETS; do
        if [ "$mode" = a ]; then args=(--m "$M_A" --rate "$RATE_A"); else args=(--m "$M_B" --rate 0); fi
        start_server "$target" "$n"
        echo ">> $target n=$n mode=$mode run=$run" >&2
        node load.mjs --target "$target" --url "$URL" --pid "$SPID" --key "$KEY" --n "$n" \
          --procs "$PROCS" --payload "$PAYLOAD" "${args[@]}" --label "$target/$mode/n=$n/run$run" \
          --json "$OUT" || echo "load failed: $target $mode n=$n run $run" >&2
        stop_server
      done
    done
  done
done

node --input-type=module - "$OUT" <<'EOF'
import { readFileSync } from 'node:fs';
const rows = readFileSync(process.argv[2], 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
const cols = ['label', 'connected', 'm', 'rate', 'delivered', 'lost', 'dup', 'deliveries_per_s', 'lat_p50_ms', 'lat_p99_ms', 'lat_max_ms',
  'rss0_kib', 'rss_idle_kib', 'rss_after_kib', 'rss_per_conn_kib', 'server_cpu_us_per_delivery', 'client_cpu_ms', 'other_cpu_ms', 'loadavg'];
console.log('| ' + cols.join(' | ') + ' |');
console.log('|' + cols.map(() => '---').join('|') + '|');
for (const r of rows) console.log('| ' + cols.map((c) => r[c]).join(' | ') + ' |');
EOF
