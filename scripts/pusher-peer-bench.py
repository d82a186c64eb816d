#!/usr/bin/env python3
"""wsring's Pusher endpoint against Sockudo on the same load.

Starts each server fresh for each measurement (a `wsring node` release
build with a Pusher app on the local Redis; a Sockudo binary on its local
adapter, with the same app id, key and secret), on loopback and ephemeral
ports, and measures:

* fan-out: --members Pusher clients (protocol 7) subscribe to one public
  channel; --messages events of about 1 KiB of JSON data, each different,
  are triggered through the signed HTTP API (`POST /apps/{id}/events`, one
  kept-alive connection) at --rate per second; every member counts what it
  receives. The server's CPU (utime+stime from /proc/PID/stat) from the
  moment every member is subscribed until every event was delivered (or
  the drain deadline passed), divided by the deliveries counted, is the
  CPU per delivered message.
* idle memory: --idle Pusher connections from client worker processes
  (at most 15,000 each), each subscribed to a public channel of its own,
  held --idle-seconds; the server's RSS after the hold minus its RSS before
  the first connection, divided by the connections, is the memory per idle
  connection.

No client offers permessage-deflate, so neither server compresses
(Sockudo's compression is off by default as well). The server order
alternates from one round to the next (--rounds) so that drift in the
machine's load shows as noise in both columns. Every phase is bounded in
time, every process the script started is stopped on exit, and the node's
Redis namespace is removed.

    python3 scripts/pusher-peer-bench.py --sockudo /path/to/sockudo   # Sockudo on PATH by default
    python3 scripts/pusher-peer-bench.py --against native

With `--against native` the second column is wsring's native protocol on
the same node and the same load instead of Sockudo: the node then serves
both protocols (`--insecure-no-auth` opens `/ws`, `--api-key` keeps the
native API authenticated), each native client joins the room the Pusher
client would subscribe to, and the events go through `POST /api/publish`
with the same 1 KiB JSON as data.

Python 3 standard library only. The binary is built with
`cargo build --release -p wsring` unless --no-build (or --bin) is given.
"""
import argparse
import asyncio
import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

APP_ID = "4242"
APP_KEY = "bench-key"
APP_SECRET = "bench-secret-0123456789"
API_KEY = "bench-api-key-0123456789"
EVENT = "bench-event"
EVENT_BYTES = EVENT.encode()
NATIVE_MESSAGE = b'"type":"message"'
# One process may hold about 20,000 open files: stay clear of it.
MAX_PER_WORKER = 15_000


# ---------------------------------------------------------------- client side

def frame(op, payload):
    """One masked client frame."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | op, 0x80 | n])
    elif n < 65536:
        head = bytes([0x80 | op, 0x80 | 126]) + struct.pack(">H", n)
    else:
        head = bytes([0x80 | op, 0x80 | 127]) + struct.pack(">Q", n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


class Client(asyncio.Protocol):
    """One client: handshake, then (Pusher, protocol 7) wait for
    `connection_established`, subscribe to `channel` and count `EVENT`
    frames, answering pings of both the WebSocket and the Pusher kind; or
    (native) wait for `welcome`, join the room `channel` and count room
    messages."""

    def __init__(self, proto, host, port, channel, subscribed, stats):
        self.proto = proto
        self.host, self.port, self.channel = host, port, channel
        self.subscribed = subscribed
        self.stats = stats
        self.buf = bytearray()
        self.upgraded = False
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        path = (f"/app/{APP_KEY}?protocol=7&client=bench&version=1.0" if self.proto == "pusher"
                else f"/ws?user=u-{self.channel}-{id(self):x}")
        transport.write(
            (f"GET {path} HTTP/1.1\r\n"
             f"Host: {self.host}:{self.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())

    def data_received(self, data):
        self.buf += data
        if not self.upgraded:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end])
            del self.buf[:end + 4]
            if not head.startswith(b"HTTP/1.1 101"):
                return self.fail("handshake: " + head.split(b"\r\n")[0].decode(errors="replace"))
            if b"permessage-deflate" in head.lower():
                return self.fail("permessage-deflate negotiated though not offered")
            self.upgraded = True
        while len(self.buf) >= 2:
            b0, b1 = self.buf[0], self.buf[1]
            n, at = b1 & 0x7F, 2
            if n == 126:
                if len(self.buf) < 4:
                    return
                n, at = struct.unpack(">H", self.buf[2:4])[0], 4
            elif n == 127:
                if len(self.buf) < 10:
                    return
                n, at = struct.unpack(">Q", self.buf[2:10])[0], 10
            if len(self.buf) < at + n:
                return
            payload = bytes(self.buf[at:at + n])
            del self.buf[:at + n]
            self.on_frame(b0 & 0x0F, payload)

    def on_frame(self, op, payload):
        if op == 0x1 and self.proto == "native":
            if NATIVE_MESSAGE in payload:
                self.stats["delivered"] += 1
            elif b'"welcome"' in payload:
                join = {"type": "join", "room": self.channel, "id": "j"}
                self.transport.write(frame(0x1, json.dumps(join).encode()))
            elif b'"ack"' in payload:
                if not self.subscribed.done():
                    self.subscribed.set_result(True)
            elif b'"error"' in payload:
                self.fail("error frame " + payload.decode(errors="replace")[:200])
        elif op == 0x1:
            # Only the event name is looked for, to keep the client cheap
            # (servers order the fields differently).
            if EVENT_BYTES in payload:
                self.stats["delivered"] += 1
            elif b"pusher:connection_established" in payload:
                sub = {"event": "pusher:subscribe", "data": {"channel": self.channel}}
                self.transport.write(frame(0x1, json.dumps(sub).encode()))
            elif b"subscription_succeeded" in payload:
                if not self.subscribed.done():
                    self.subscribed.set_result(True)
            elif b"pusher:ping" in payload:
                self.transport.write(frame(0x1, b'{"event":"pusher:pong","data":{}}'))
            elif b"pusher:error" in payload:
                self.fail("pusher:error " + payload.decode(errors="replace")[:200])
        elif op == 0x9:
            self.transport.write(frame(0xA, payload))
        elif op == 0x8:
            self.fail("closed by the server: " + payload[2:].decode(errors="replace"))

    def fail(self, why):
        self.stats["errors"] += 1
        if not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError(why))
        self.transport.close()

    def connection_lost(self, exc):
        if self.subscribed.done() and self.subscribed.exception() is None:
            self.stats["lost"] += 1
        elif not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError(f"connection lost: {exc}"))


async def open_clients(proto, host, port, channels, stats, timeout, concurrency=200):
    """Opens one subscribed client per channel name; returns the protocols."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)
    protos = []

    async def one(channel):
        async with gate:
            subscribed = loop.create_future()
            _, client = await loop.create_connection(
                lambda: Client(proto, host, port, channel, subscribed, stats), host, port)
            protos.append(client)
            await subscribed

    await asyncio.wait_for(asyncio.gather(*(one(c) for c in channels)), timeout)
    return protos


async def idle_worker(proto, host, port, first, count, timeout):
    """Worker process: `count` subscribed idle clients; prints `ready`, then
    answers each stdin line with its counters until stdin closes."""
    stats = {"delivered": 0, "errors": 0, "lost": 0}
    started = time.monotonic()
    try:
        await open_clients(proto, host, port, [f"idle-{first + i}" for i in range(count)], stats, timeout)
    except Exception as e:  # reported to the parent, which fails the run
        print(json.dumps({"failed": repr(e)}), flush=True)
        return
    print(json.dumps({"ready": count, "seconds": round(time.monotonic() - started, 2)}),
          flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.readline():
        print(json.dumps({"status": stats}), flush=True)


# ---------------------------------------------------------------- HTTP API

def signed_path(method, path, body):
    """`path?query` signed as the Pusher HTTP API wants it."""
    params = {
        "auth_key": APP_KEY,
        "auth_timestamp": str(int(time.time())),
        "auth_version": "1.0",
        "body_md5": hashlib.md5(body).hexdigest(),
    }
    query = "&".join(f"{k}={params[k]}" for k in sorted(params))
    sig = hmac.new(APP_SECRET.encode(), f"{method}\n{path}\n{query}".encode(),
                   hashlib.sha256).hexdigest()
    return f"{path}?{query}&auth_signature={sig}"


def event_data(i):
    """About 1 KiB of chat-like JSON as the event's data, each different."""
    words = ["hello", "team", "deploy", "done", "review", "pull", "request", "thanks",
             "meeting", "noon", "release", "notes", "bug", "fixed", "staging", "looks"]
    text = " ".join(words[(i * 7 + k * 3) % len(words)] for k in range(150))
    data = {"id": f"msg_{i:08d}", "author": {"id": f"user_{i % 37}", "name": f"User {i % 37}"},
            "text": text, "seq": i}
    s = json.dumps(data)
    data["text"] = text[:len(text) - max(0, len(s) - 1024)]
    return data


def request(proto, i):
    """(path, body, headers) of the i-th event's HTTP call."""
    data = event_data(i)
    if proto == "native":
        body = json.dumps({"room": "bench", "data": data}).encode()
        return "/api/publish", body, {"Content-Type": "application/json",
                                      "Authorization": f"Bearer {API_KEY}"}
    body = json.dumps({"name": EVENT, "channels": ["bench"], "data": json.dumps(data)}).encode()
    return (signed_path("POST", f"/apps/{APP_ID}/events", body), body,
            {"Content-Type": "application/json"})


def publish(proto, host, port, count, rate, result):
    """Triggers `count` events at `rate` per second on one kept-alive
    connection (in a thread); records failures in `result`."""
    conn = http.client.HTTPConnection(host, port, timeout=10)
    start = time.monotonic()
    for i in range(count):
        due = start + i / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        path, body, headers = request(proto, i)
        try:
            conn.request("POST", path, body, headers)
            resp = conn.getresponse()
            text = resp.read()
        except (OSError, http.client.HTTPException) as e:
            result["errors"].append(repr(e))
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=10)
            continue
        if resp.status not in (200, 202):
            result["errors"].append(f"{resp.status} {text[:200]!r}")
        else:
            result["ok"] += 1
    result["seconds"] = time.monotonic() - start
    conn.close()


# ---------------------------------------------------------------- servers

def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, deadline):
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port} after the start deadline")


class Server:
    """One server process, started fresh; `stop()` ends it."""

    def __init__(self, kind, a):
        self.kind, self.a = kind, a
        self.proto = "native" if kind == "native" else "pusher"
        self.ns = None
        env = dict(os.environ, NO_COLOR="1")
        env.pop("RUST_LOG", None)
        if kind in ("wsring", "native"):
            self.ns = f"pusherbench-{os.getpid()}-{time.monotonic_ns()}"
            cmd = [a.bin, "node", "--id", "pb1", "--listen", "127.0.0.1:0",
                   "--broker", f"redis://{a.redis}/", "--registry", f"redis://{a.redis}/",
                   "--namespace", self.ns, "--max-connections", "19000",
                   "--pusher-app-id", APP_ID, "--pusher-key", APP_KEY,
                   "--pusher-secret", APP_SECRET]
            if a.against == "native":
                # The same node for both columns, serving both protocols.
                cmd += ["--insecure-no-auth", "--api-key", API_KEY]
            self.p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=a.stderr, env=env, text=True,
                                      start_new_session=True)
            seen = []
            while True:
                line = self.p.stdout.readline()
                seen.append(line)
                if " serving " in line:
                    break
                if not line or len(seen) > 20:
                    raise SystemExit(f"wsring node did not start: {seen!r}")
            m = re.search(r"//([\d.]+):(\d+)", line)
            self.host, self.port = m.group(1), int(m.group(2))
        else:
            self.host, self.port = "127.0.0.1", free_port()
            env.update({
                "HOST": self.host, "PORT": str(self.port),
                "SOCKUDO_DEFAULT_APP_ID": APP_ID, "SOCKUDO_DEFAULT_APP_KEY": APP_KEY,
                "SOCKUDO_DEFAULT_APP_SECRET": APP_SECRET,
                # Its defaults cap the app at 100 connections and 100
                # events per second; the load here needs more.
                "SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS": "19000",
                "SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND": "100000",
                "ADAPTER_DRIVER": "local", "CACHE_DRIVER": "memory",
                "QUEUE_DRIVER": "memory", "APP_MANAGER_DRIVER": "memory",
                "RATE_LIMITER_ENABLED": "false", "METRICS_ENABLED": "false",
                "WEBSOCKET_COMPRESSION": "disabled",
            })
            self.p = subprocess.Popen([a.sockudo], stdin=subprocess.DEVNULL,
                                      stdout=a.stderr, stderr=a.stderr, env=env,
                                      start_new_session=True)
            wait_port(self.port, self.p, time.monotonic() + 60)
        self.pid = self.p.pid

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        if self.ns:
            redis_purge(self.a.redis, self.ns)


def redis_purge(addr, ns):
    """Deletes the namespace's keys (SCAN + DEL over RESP, stdlib only)."""
    host, port = addr.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=5) as s:
            f = s.makefile("rb")

            def cmd(*args):
                out = f"*{len(args)}\r\n".encode()
                for x in args:
                    b = x.encode()
                    out += f"${len(b)}\r\n".encode() + b + b"\r\n"
                s.sendall(out)
                return read(f)

            cursor = "0"
            for _ in range(10_000):
                cursor, keys = cmd("SCAN", cursor, "MATCH", f"*{ns}*", "COUNT", "1000")
                if keys:
                    cmd("DEL", *keys)
                if cursor == "0":
                    break
    except OSError:
        pass


def read(f):
    line = f.readline().rstrip(b"\r\n")
    t, rest = line[:1], line[1:]
    if t in (b"+", b"-", b":"):
        return rest.decode()
    if t == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2].decode()
    if t == b"*":
        return [read(f) for _ in range(int(rest))]
    raise OSError(f"unexpected RESP {line!r}")


# ---------------------------------------------------------------- measurements

async def fanout(srv, a):
    stats = {"delivered": 0, "errors": 0, "lost": 0}
    protos = await open_clients(srv.proto, srv.host, srv.port, ["bench"] * a.members, stats, 60)
    want = a.members * a.messages
    cpu0 = cpu_seconds(srv.pid)
    result = {"ok": 0, "errors": []}
    pub = threading.Thread(target=publish,
                           args=(srv.proto, srv.host, srv.port, a.messages, a.rate, result), daemon=True)
    pub.start()
    while pub.is_alive():
        await asyncio.sleep(0.05)
    deadline = time.monotonic() + a.drain
    while stats["delivered"] < result["ok"] * a.members and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    cpu = cpu_seconds(srv.pid) - cpu0
    for p in protos:
        p.transport.close()
    out = {"cpu_s": cpu, "delivered": stats["delivered"], "wanted": want,
           "published": result["ok"], "api_errors": len(result["errors"]),
           "client_errors": stats["errors"]}
    if result["errors"]:
        out["first_api_error"] = result["errors"][0]
    return out


def idle(srv, a):
    base = rss_kib(srv.pid)
    workers = []
    n_workers = max(a.idle_workers, -(-a.idle // MAX_PER_WORKER))
    per = -(-a.idle // n_workers)
    first = 0
    while first < a.idle:
        count = min(per, a.idle - first)
        w = subprocess.Popen(
            [sys.executable, __file__, "--worker", srv.proto, srv.host, str(srv.port), str(first),
             str(count), str(a.connect_timeout)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        workers.append(w)
        first += count
    try:
        for w in workers:
            line = json.loads(w.stdout.readline() or '{"failed":"worker exited"}')
            if "ready" not in line:
                raise SystemExit(f"{srv.kind}: idle worker failed: {line}")
        time.sleep(a.idle_seconds)  # the hold being measured, not a readiness wait
        after = rss_kib(srv.pid)
        lost = errors = 0
        for w in workers:
            w.stdin.write("status\n")
            w.stdin.flush()
            s = json.loads(w.stdout.readline())["status"]
            lost += s["lost"]
            errors += s["errors"]
    finally:
        for w in workers:
            try:
                w.stdin.close()
            except OSError:
                pass
            try:
                w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()
    return {"rss_before_kib": base, "rss_after_kib": after,
            "kib_per_conn": (after - base) / a.idle, "lost": lost, "errors": errors}


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        proto, host, port, first, count, timeout = sys.argv[2:8]
        asyncio.run(idle_worker(proto, host, int(port), int(first), int(count), float(timeout)))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", help="wsring binary (default: build target/release/wsring)")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--against", choices=["sockudo", "native", "none"], default="sockudo",
                    help="the second column: Sockudo, wsring's native protocol, or nothing")
    ap.add_argument("--sockudo", default="sockudo", help="Sockudo binary")
    ap.add_argument("--redis", default="127.0.0.1:6379")
    ap.add_argument("--members", type=int, default=100)
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=100.0, help="events per second")
    ap.add_argument("--drain", type=float, default=30.0,
                    help="seconds allowed after the last event for deliveries")
    ap.add_argument("--idle", type=int, default=4000)
    ap.add_argument("--idle-workers", type=int, default=2)
    ap.add_argument("--idle-seconds", type=float, default=20.0)
    ap.add_argument("--connect-timeout", type=float, default=120.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--skip", choices=["fanout", "idle"], action="append", default=[])
    ap.add_argument("--server-log", action="store_true", help="servers' stderr to ours")
    a = ap.parse_args()
    a.messages = min(a.messages, 100_000)
    a.rounds = min(a.rounds, 10)
    a.stderr = None if a.server_log else subprocess.DEVNULL
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not a.bin:
        a.bin = os.path.join(root, "target", "release", "wsring")
        if not a.no_build:
            subprocess.run(["cargo", "build", "--release", "-p", "wsring"], cwd=root, check=True)
    kinds = ["wsring"] + ([] if a.against == "none" else [a.against])
    rows = []
    for r in range(a.rounds):
        order = kinds if r % 2 == 0 else kinds[::-1]
        for kind in order:
            for what in ("fanout", "idle"):
                if what in a.skip:
                    continue
                srv = Server(kind, a)
                try:
                    res = asyncio.run(fanout(srv, a)) if what == "fanout" else idle(srv, a)
                finally:
                    srv.stop()
                res.update(round=r + 1, server=kind, what=what)
                print(json.dumps(res), flush=True)
                rows.append(res)
    print()
    print(f"{'round':>5} {'server':>8} {'µs/delivered':>13} {'delivered':>10} "
          f"{'KiB/idle conn':>14} {'lost':>5}")
    for r in range(a.rounds):
        for kind in kinds:
            f = next((x for x in rows if x["round"] == r + 1 and x["server"] == kind
                      and x["what"] == "fanout"), None)
            i = next((x for x in rows if x["round"] == r + 1 and x["server"] == kind
                      and x["what"] == "idle"), None)
            us = f"{f['cpu_s'] * 1e6 / max(1, f['delivered']):.2f}" if f else "-"
            dl = f"{f['delivered']}/{f['wanted']}" if f else "-"
            kb = f"{i['kib_per_conn']:.2f}" if i else "-"
            lost = str(i["lost"] + i["errors"]) if i else "-"
            print(f"{r + 1:>5} {kind:>8} {us:>13} {dl:>10} {kb:>14} {lost:>5}")
    if len(kinds) == 2:
        other = kinds[1]
        name = {"sockudo": "Sockudo", "native": "native"}[other]
        for r in range(a.rounds):
            pick = {(x["server"], x["what"]): x for x in rows if x["round"] == r + 1}
            parts = []
            if ("wsring", "fanout") in pick and (other, "fanout") in pick:
                w, s = pick[("wsring", "fanout")], pick[(other, "fanout")]
                ratio = (w["cpu_s"] / max(1, w["delivered"])) / max(
                    1e-12, s["cpu_s"] / max(1, s["delivered"]))
                parts.append(f"CPU/delivered wsring/{name} {ratio:.2f}x")
            if ("wsring", "idle") in pick and (other, "idle") in pick:
                w, s = pick[("wsring", "idle")], pick[(other, "idle")]
                parts.append(f"KiB/conn wsring/{name} "
                             f"{w['kib_per_conn'] / max(1e-9, s['kib_per_conn']):.2f}x")
            print(f"round {r + 1}: " + ", ".join(parts))


if __name__ == "__main__":
    main()
