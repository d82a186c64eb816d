#!/bin/sh
# Bytes on the wire with permessage-deflate, measured by `wsring bench`:
# a room of 100 on a `wsring dev` cluster, 200 publishes of 800 bytes of
# chat words (`--text chat`, different in every message), 20,000
# deliveries, without deflate, with deflate as the node sends by default,
# and with server context takeover at a 15- and a 10-bit window. Each run
# starts its own cluster on a free port and stops it.
#
#   scripts/deflate-bytes.sh [path/to/wsring]    # default: target/debug/wsring
set -eu
BIN=${1:-target/debug/wsring}
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
run() { # label, settings for the cluster, bench flags
  port=$(free_port)
  env $2 "$BIN" dev --port "$port" > /dev/null 2>&1 &
  dev=$!
  i=0
  until curl -s -o /dev/null "http://127.0.0.1:$port/healthz"; do
    i=$((i + 1)); [ $i -lt 150 ] || { kill $dev; echo "dev did not start" >&2; exit 1; }
    sleep 0.2
  done
  echo "== $1"
  "$BIN" bench --url "ws://127.0.0.1:$port/ws" --clients 100 --mode room --room-size 100 \
    --send-rate 20 --duration 10s --payload 800 --text chat $3 | grep -E '^\| (sent|received|bytes)'
  kill $dev
  wait $dev 2>/dev/null || true
}
run none "WSRING_DEFLATE=true" ""
run deflate "WSRING_DEFLATE=true" "--deflate"
run takeover "WSRING_DEFLATE_SERVER_CONTEXT_TAKEOVER=true" "--deflate"
run takeover-10-bits "WSRING_DEFLATE_SERVER_CONTEXT_TAKEOVER=true WSRING_DEFLATE_SERVER_MAX_WINDOW_BITS=10" "--deflate"
