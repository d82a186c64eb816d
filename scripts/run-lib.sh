# Shared by the benchmark scripts that start wsring processes on the local
# Redis (source it; it defines functions only): the cleanup of a run and a
# bounded wait for a log line. The sourcing script sets PIDS (the processes
# it started), NS (its Redis namespace) and RUN (its run directory), and
# KEEP=1 keeps the run directory.

# Kills the run's processes, deletes its Redis keys and its directory.
run_cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for pat in "{$NS}:*" "{$NS:*"; do
    redis-cli --scan --pattern "$pat" 2>/dev/null | head -100000 | xargs -r -n 500 redis-cli unlink >/dev/null 2>&1 || true
  done
  if [ -z "${KEEP:-}" ]; then rm -rf "$RUN"; else echo "run directory: $RUN"; fi
}

# wait_line FILE PATTERN SECONDS: the first line of FILE matching PATTERN.
wait_line() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    if grep -q -- "$2" "$1" 2>/dev/null; then grep -m1 -- "$2" "$1"; return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for '$2' in $1" >&2
  tail -n 5 "$1" "${1%.out}.err" >&2 || true
  return 1
}
