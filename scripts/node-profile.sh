#!/usr/bin/env bash
# Where a node's CPU goes on the cross-node message path.
#
# Starts 3 `wsring node`s (hash routing) and one `wsring gateway` on the
# local Redis (a fresh namespace), runs `wsring bench` through the gateway
# in direct mode (client i sends to user i+1, so most messages cross nodes
# through Redis), and while it runs counts the nodes' system calls and
# context switches (`perf stat`) and samples node n1's stacks
# (`perf record -g`). Prints, per delivered message: the nodes' CPU (user and
# system, from /proc), their system calls and context switches, then n1's
# hottest symbols and its kernel share. Everything it starts is killed on
# exit.
#
# Usage: scripts/node-profile.sh [rate] [seconds] ; env: CLIENTS (300),
# NODE_ARGS (extra `wsring node` flags, e.g. "--worker-threads 1"), NO_BUILD=1, KEEP=1 (keep the run directory). Needs `perf` (apt: linux-perf)
# and root, or a perf_event_paranoid that allows it.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-5000}
SECONDS_SENDING=${2:-20}
CLIENTS=${CLIENTS:-300}
NODE_ARGS=${NODE_ARGS:-}
TARGET=${CARGO_TARGET_DIR:-target}
REDIS=redis://127.0.0.1:6379/
NS="nodeprof$$x$(date +%s)"
RUN=$(mktemp -d /tmp/node-profile.XXXXXX)

if [ -z "${NO_BUILD:-}" ]; then cargo build --release -j2 -q -p wsring; fi
BIN=$TARGET/release/wsring

PIDS=()
# shellcheck source=scripts/run-lib.sh
. scripts/run-lib.sh
trap run_cleanup EXIT INT TERM

NODE_PIDS=()
for id in n1 n2 n3; do
  RUST_LOG=warn "$BIN" node --id "$id" --listen 127.0.0.1:0 --registry "$REDIS" --broker "$REDIS" \
    --namespace "$NS" --insecure-no-auth ${NODE_ARGS:-} >"$RUN/$id.out" 2>"$RUN/$id.err" &
  PIDS+=($!)
  NODE_PIDS+=($!)
done
for id in n1 n2 n3; do wait_line "$RUN/$id.out" serving 30 >/dev/null; done
RUST_LOG=warn "$BIN" gateway --listen 127.0.0.1:0 --registry "$REDIS" --namespace "$NS" \
  --insecure-no-auth >"$RUN/g.out" 2>"$RUN/g.err" &
PIDS+=($!)
GW=$(wait_line "$RUN/g.out" "listening on" 30 | awk '{print $NF}')

ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
declare -A U0 S0
for p in "${NODE_PIDS[@]}"; do read -r U0[$p] S0[$p] < <(ticks "$p"); done
NODES_CSV=$(IFS=,; echo "${NODE_PIDS[*]}")
perf stat -e raw_syscalls:sys_enter,context-switches -p "$NODES_CSV" -x, -o "$RUN/stat.csv" &
STAT=$!
perf record -q -F 999 -g -p "${NODE_PIDS[0]}" -o "$RUN/perf.data" 2>/dev/null &
REC=$!
"$BIN" bench --url "ws://$GW/ws" --clients "$CLIENTS" --rate "$RATE" --duration "${SECONDS_SENDING}s" \
  --mode direct >"$RUN/bench.out" 2>"$RUN/bench.err"
kill -INT "$STAT" "$REC"
wait "$STAT" "$REC" 2>/dev/null || true
HZ=$(getconf CLK_TCK)
USER_T=0
SYS_T=0
for p in "${NODE_PIDS[@]}"; do
  read -r u s < <(ticks "$p")
  USER_T=$((USER_T + u - U0[$p]))
  SYS_T=$((SYS_T + s - S0[$p]))
done
# The bench's table row `| received | N (R/s) |`.
RECEIVED=$(awk -F'|' '$2 ~ /^ *received *$/ {split($3, a, " "); print a[1]}' "$RUN/bench.out")
echo "bench: $(grep -E '^\| (sent|received|latency)' "$RUN/bench.out" | tr -s ' ' | tr '\n' ' ')"
if [ -z "$RECEIVED" ] || [ "$RECEIVED" = 0 ]; then
  echo "no delivered-message count in the bench output" >&2
  cat "$RUN/bench.out" >&2
  exit 1
fi
SYSCALLS=$(awk -F, '/raw_syscalls:sys_enter/ {print $1}' "$RUN/stat.csv")
SWITCHES=$(awk -F, '/context-switches/ {print $1}' "$RUN/stat.csv")
awk -v r="$RECEIVED" -v u="$USER_T" -v s="$SYS_T" -v hz="$HZ" -v sc="$SYSCALLS" -v cs="$SWITCHES" 'BEGIN {
  printf "delivered %d; the 3 nodes per 1,000 delivered: CPU %.1f ms (user %.1f, system %.1f: %.0f%% in the kernel)\n",
    r, (u + s) * 1000000 / hz / r, u * 1000000 / hz / r, s * 1000000 / hz / r, 100 * s / (u + s)
  printf "per delivered message, the 3 nodes together: %.2f system calls, %.2f context switches\n", sc / r, cs / r
}'
perf report -i "$RUN/perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null \
  | grep '%' >"$RUN/symbols.txt" || true
echo "n1's samples: $(awk '$3 == "[k]" {k += $1} {t += $1} END {printf "%.0f%% in the kernel", 100 * k / t}' "$RUN/symbols.txt")" \
  "($(awk '$3 == "[k]" && ($4 ~ /finish_task_switch|raw_spin_unlock|schedule|futex|try_to_wake_up/) {k += $1} END {printf "%.1f%%", k}' "$RUN/symbols.txt") in context switches and wake-ups)"
echo "n1's hottest symbols (self time):"
head -25 "$RUN/symbols.txt" | cut -c1-120
