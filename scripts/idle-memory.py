#!/usr/bin/env python3
"""Memory per idle WebSocket connection on a node and on a gateway.

Starts `wsring node` and `wsring gateway` processes (release build) on the
local Redis with a namespace of their own, reads their RSS with no client
connected, opens N idle connections (through the gateways, or straight to
the nodes with --direct) from client worker processes (optionally bound to
several 127.0.0.x source addresses), waits until every connection got its `welcome`
frame, reads RSS again and prints KiB per connection. With --hold SECONDS
the connections then stay open that long while the nodes ping them (every
--ping-interval) and the clients answer; the run reports whether every
connection survived. Every phase is bounded in time, and every process the
script started is killed on exit.

    python3 scripts/idle-memory.py                      # 8,000 through one gateway
    python3 scripts/idle-memory.py --direct             # 8,000 straight to the node
    python3 scripts/idle-memory.py --deflate            # each offering permessage-deflate
    python3 scripts/idle-memory.py -n 100000 --nodes 6 --gateways 11 --hold 60 --ping-interval 10s

With --during 'COMMAND' a shell command runs once every connection is
welcomed (the hold starts with it, and lasts at least as long as it does),
with the gateways' WebSocket URLs in $WSRING_GATEWAYS and the nodes' in
$WSRING_NODES (comma-separated); for example a `wsring bench` against the
loaded cluster. Its output goes to the terminal, and the CPU seconds the
servers spent while it ran are reported. -n 0 starts the same cluster with
no idle connections, for a baseline of the same command.

With --bench-rate R the script itself runs `wsring bench` (direct mode)
during the hold: one bench worker process per gateway, --bench-clients
users in all, R messages per second across them, for --bench-duration; the
workers' latency histograms are merged exactly and p50/p99/max printed with
the bench's own CPU time and the servers'. Each --bench-wrap (a command
prefix such as 'nice -n -5'; may be repeated, '' for none) is one bench run,
in the order given.

With --rust-clients the connections are held by the Rust idle worker
(crates/bench/examples/idle-worker.rs, built with the binary) instead of
Python worker processes: the same protocol and counts, at a fraction of the
CPU per answered ping.

Python 3 standard library only. The binary is built with
`cargo build --release -p wsring` unless --no-build (or --bin) is given.
"""
import argparse
import asyncio
import base64
import json
import os
import re
import shlex
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request

# One process may hold about 20,000 open files: stay clear of it.
MAX_PER_WORKER = 15_000
# Per-process connection cap given to nodes and gateways (a gateway holds two
# descriptors per tunnel, so it can tunnel at most about half of this).
MAX_CONNECTIONS = 19_000


# ---------------------------------------------------------------- worker side

# With --deflate (passed to the workers in the environment) every connection
# offers permessage-deflate as browsers do, and must get it. The frames an
# idle connection receives (welcome, pings) are below the node's deflate
# threshold or control frames, so they stay uncompressed.
DEFLATE_OFFER = ("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                 if os.environ.get("WSRING_IDLE_DEFLATE") == "1" else "")

class Conn(asyncio.Protocol):
    """One client connection: handshake, wait for `welcome`, answer pings."""

    def __init__(self, stats, path, host, welcomed):
        self.stats = stats
        self.path = path
        self.host = host
        self.welcomed = welcomed
        self.buf = bytearray()
        self.upgraded = False
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
             f"{DEFLATE_OFFER}Sec-WebSocket-Version: 13\r\n\r\n").encode())

    def data_received(self, data):
        self.buf += data
        if not self.upgraded:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end])
            del self.buf[:end + 4]
            if not head.startswith(b"HTTP/1.1 101"):
                body = bytes(self.buf[:300]).decode(errors="replace")
                self.fail("handshake: " + head.split(b"\r\n")[0].decode(errors="replace")
                          + " " + body)
                return
            if DEFLATE_OFFER and b"permessage-deflate" not in head.lower():
                self.fail("permessage-deflate was offered but not negotiated")
                return
            self.upgraded = True
        self.frames()

    def frames(self):
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
            op = b0 & 0x0F
            if op == 0x1 and not self.welcomed.done() and b'"welcome"' in payload:
                self.welcomed.set_result(True)
            elif op == 0x9:
                self.stats["pings"] += 1
                self.send(0xA, payload)
            elif op == 0x8:
                self.stats["close_frames"] += 1
                self.send(0x8, payload[:2])
                self.fail("closed by the server: " + payload[2:].decode(errors="replace"))

    def send(self, op, payload):
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.transport.write(bytes([0x80 | op, 0x80 | len(payload)]) + mask + masked)

    def fail(self, why):
        if not self.welcomed.done():
            self.welcomed.set_exception(ConnectionError(why))
        self.transport.close()

    def connection_lost(self, exc):
        if self.welcomed.done() and self.welcomed.exception() is None:
            self.stats["open"] -= 1
            self.stats["lost"] += 1
        if not self.welcomed.done():
            self.welcomed.set_exception(ConnectionError(f"connection lost: {exc}"))


async def worker(targets, source, first, count, timeout, concurrency):
    """Opens `count` connections, prints `ready` once all are welcomed, then
    answers `status` lines on stdin until stdin closes."""
    loop = asyncio.get_running_loop()
    stats = {"open": 0, "lost": 0, "pings": 0, "close_frames": 0}
    conns = []
    gate = asyncio.Semaphore(concurrency)

    async def one(i):
        host, port, path = targets[i % len(targets)]
        async with gate:
            welcomed = loop.create_future()
            sep = "&" if "?" in path else "?"
            # An explicit source address only when asked for: a port bound
            # explicitly (and its TIME_WAIT after) is taken from every
            # connect() for a minute, while a plain connect() shares ports
            # between different destinations.
            _, proto = await loop.create_connection(
                lambda: Conn(stats, f"{path}{sep}user=idle-{first + i}", f"{host}:{port}", welcomed),
                host, port, local_addr=(source, 0) if source else None)
            conns.append(proto)
            await welcomed
            stats["open"] += 1

    started = time.monotonic()
    results = await asyncio.wait_for(
        asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True), timeout)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        print(json.dumps({"failed": len(errors), "first_error": repr(errors[0])}), flush=True)
        return
    print(json.dumps({"ready": count, "seconds": round(time.monotonic() - started, 2)}), flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.readline():
        print(json.dumps({"status": stats}), flush=True)


# ---------------------------------------------------------------- parent side

def rss(pid):
    """VmRSS and the smaps_rollup figures of `pid`, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        out["VmRSS"] = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            m = re.match(r"(Rss|Pss|Anonymous|Private_Dirty):\s+(\d+) kB", line)
            if m:
                out[m.group(1)] = int(m.group(2))
    return out


def cpu_seconds(pid):
    """utime + stime of `pid`, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_bench(a, wrap, gateways, server_pids, deadline, client_pids=()):
    """One `wsring bench` run, one worker process per gateway (users split
    evenly, one prefix so the direct-mode pairs cross workers), histograms
    merged; returns the figures."""
    k = len(gateways)
    per = -(-a.bench_clients // k)
    prefix = f"bench{os.getpid()}x{int(time.monotonic() * 1000) % 1_000_000}"
    import resource
    procs = []
    # Only the bench workers are waited for between here and the end, so the
    # growth of the children's usage is their CPU time (the client workers
    # are still running and not in it).
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu0 = sum(cpu_seconds(p) for p in server_pids)
    clients0 = sum(cpu_seconds(p) for p in client_pids)
    t0 = time.monotonic()
    for i, (_, addr) in enumerate(gateways):
        first = i * per
        clients = min(per, a.bench_clients - first)
        if clients <= 0:
            break
        cmd = shlex.split(wrap) + [
            a.bin, "bench", "--worker", "--url", f"ws://{addr}/ws", "--clients", str(clients),
            "--first", str(first), "--total", str(a.bench_clients), "--prefix", prefix,
            "--mode", "direct", "--rate", str(a.bench_rate),
            "--duration", f"{a.bench_duration:g}s", "--payload", str(a.bench_payload)]
        procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=a.stderr, text=True))
    hist, sent, received = {}, 0, 0
    for p in procs:
        left = max(1.0, deadline - time.monotonic() - 30)
        try:
            out, _ = p.communicate(timeout=left)
        except subprocess.TimeoutExpired:
            p.kill()
            raise SystemExit("a bench worker did not finish in time")
        lines = out.strip().splitlines()
        if p.returncode != 0 or not lines:
            raise SystemExit(f"a bench worker failed (status {p.returncode})")
        r = json.loads(lines[-1])
        sent += r["sent"]
        received += r["received"]
        for v, c in r["latency_us"]:
            hist[v] = hist.get(v, 0) + c
    wall = time.monotonic() - t0
    server_cpu = sum(cpu_seconds(p) for p in server_pids) - cpu0
    clients_cpu = sum(cpu_seconds(p) for p in client_pids) - clients0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    bench_cpu = usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime
    total = sum(hist.values())

    def q(f):
        seen = 0
        for v in sorted(hist):
            seen += hist[v]
            if seen >= f * total:
                return v / 1000
        return 0.0

    return {"wrap": wrap, "sent": sent, "received": received, "p50_ms": q(0.5),
            "p99_ms": q(0.99), "p999_ms": q(0.999), "max_ms": max(hist, default=0) / 1000,
            "bench_cpu_seconds": round(bench_cpu, 1), "server_cpu_seconds": round(server_cpu, 1),
            "idle_clients_cpu_seconds": round(clients_cpu, 1),
            "seconds": round(wall, 1)}


def redis_purge(addr, ns, deadline=10):
    """Deletes the namespace's keys (SCAN + UNLINK over RESP)."""
    host, port = addr.split(":")
    with socket.create_connection((host, int(port)), timeout=deadline) as s:
        f = s.makefile("rwb")

        def cmd(*args):
            f.write(f"*{len(args)}\r\n".encode())
            for a in args:
                a = str(a).encode()
                f.write(b"$%d\r\n%s\r\n" % (len(a), a))
            f.flush()
            return reply()

        def reply():
            line = f.readline().rstrip(b"\r\n")
            kind, rest = line[:1], line[1:]
            if kind in (b"+", b"-"):
                return rest.decode()
            if kind == b":":
                return int(rest)
            if kind == b"$":
                n = int(rest)
                return None if n < 0 else f.read(n + 2)[:-2].decode()
            if kind == b"*":
                return [reply() for _ in range(int(rest))]
            raise ValueError(f"unexpected Redis reply {line!r}")

        for pattern in (f"{{{ns}}}:*", f"{{{ns}:*"):
            cursor = "0"
            while True:
                cursor, keys = cmd("SCAN", cursor, "MATCH", pattern, "COUNT", 500)
                if keys:
                    cmd("UNLINK", *keys)
                if cursor == "0":
                    break


class Cluster:
    """The processes of one run; all killed by `close`."""

    def __init__(self, a):
        self.a = a
        self.procs = []
        self.wrapped = []
        self.ns = f"idlemem-{os.getpid()}-{int(time.time())}"
        self.env = dict(os.environ, NO_COLOR="1")
        # The servers' own default log filter unless one is asked for: what a
        # deployment runs with is what gets measured.
        self.env.pop("RUST_LOG", None)
        if a.log:
            self.env["RUST_LOG"] = a.log

    def start(self, args, needle, wrapper=None):
        cmd = [self.a.bin, *args]
        if wrapper:
            cmd = shlex.split(wrapper) + cmd
        # A session of its own, so a wrapper and what it runs go together.
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=self.a.stderr, env=self.env, text=True,
                             start_new_session=True)
        self.procs.append(p)
        # The readiness line (a wrapper may print lines of its own first).
        seen = []
        while True:
            line = p.stdout.readline()
            seen.append(line)
            if needle in line:
                break
            if not line or len(seen) > 20:
                raise SystemExit(f"wsring {' '.join(args)} did not start: {seen!r}")
        if wrapper:
            p = Wrapped(p, self.a.bin)
            self.wrapped.append(p)
        return p, line.split()[-1]

    def common(self):
        r = self.a.redis
        return ["--registry", f"redis://{r}/", "--namespace", self.ns,
                "--insecure-no-auth", "--max-connections", str(MAX_CONNECTIONS)]

    def node(self, i):
        return self.start(["node", "--id", f"n{i}", "--listen", "127.0.0.1:0",
                           "--broker", f"redis://{self.a.redis}/",
                           "--ping-interval", self.a.ping_interval, *self.common()],
                          "serving", self.a.wrap_node)

    def gateway(self):
        return self.start(["gateway", "--listen", "127.0.0.1:0", *self.common()],
                          "listening on", self.a.wrap_gateway)

    def kill_wrapped(self):
        """Kills a profiled node where it stands, connections open, so the
        profiler's "not freed" report is what the idle connections held."""
        for w in self.wrapped:
            try:
                os.kill(w.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def close(self):
        self.kill_wrapped()
        for p in self.procs:
            if p.poll() is None and p.pid not in {w.wrapper.pid for w in self.wrapped}:
                p.send_signal(signal.SIGTERM)
        wrappers = {w.wrapper.pid for w in self.wrapped}
        for p in self.procs:
            try:
                # A profiler writes its report after its program died.
                p.wait(timeout=300 if p.pid in wrappers else 15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        try:
            redis_purge(self.a.redis, self.ns)
        except OSError:
            pass


class Wrapped:
    """The wsring process a wrapper (a profiler) started, found by its
    process group; `pid` is what RSS is read from."""

    def __init__(self, wrapper, binary):
        self.wrapper = wrapper
        self.pid = None
        name = os.path.basename(binary)[:15]
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            pgid = int(stat[stat.rindex(")") + 2:].split()[2])
            if pgid == wrapper.pid and comm == name:
                self.pid = int(d)
        if self.pid is None:
            raise SystemExit("cannot find the wrapped wsring process")


def wait_until_routed(base, nodes, deadline):
    """Polls the gateway's /api/nodes until it sees every node up."""
    while True:
        try:
            with urllib.request.urlopen(f"http://{base}/api/nodes", timeout=2) as r:
                body = json.load(r)
            up = [n for n in body.get("nodes", []) if n.get("state") == "up"]
            if len(up) >= nodes:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"gateway {base} did not see {nodes} node(s) up in time")
        time.sleep(0.1)


def parse_target(url):
    m = re.match(r"wss?://([^/:]+):(\d+)(/.*)?$", url)
    if not m:
        raise SystemExit(f"cannot parse {url!r}")
    return [m.group(1), int(m.group(2)), m.group(3) or "/ws"]


def read_json(w, deadline):
    """The next JSON line a worker prints, within the deadline."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise SystemExit("time limit reached")
    import select
    r, _, _ = select.select([w.stdout], [], [], left)
    if not r:
        raise SystemExit("a worker did not answer in time")
    line = w.stdout.readline()
    if not line:
        raise SystemExit(f"a worker exited (status {w.wait()})")
    return json.loads(line)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--connections", type=int, default=8000)
    ap.add_argument("--direct", action="store_true", help="connect straight to the nodes")
    ap.add_argument("--deflate", action="store_true",
                    help="every connection offers permessage-deflate and must get it")
    ap.add_argument("--nodes", type=int, default=1)
    ap.add_argument("--gateways", type=int, default=1)
    ap.add_argument("--hold", type=float, default=0, help="seconds to hold the connections")
    ap.add_argument("--settle", type=float, default=0,
                    help="seconds the connections stay idle before RSS is read again (an "
                    "allocator may give memory back after a while)")
    ap.add_argument("--ping-interval", default="20s", help="the nodes' --ping-interval")
    ap.add_argument("--timeout", type=float, default=300, help="bound on the whole run, seconds")
    ap.add_argument("--source-ips", type=lambda v: v.split(","), default=[],
                    help="comma-separated 127.0.0.x addresses the client workers bind to, in turn "
                    "(only needed past ~28,000 connections to one address and port)")
    ap.add_argument("--redis", default="127.0.0.1:6379")
    ap.add_argument("--bin", help="wsring binary (default: build the release one)")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--log", help="RUST_LOG of the servers (default: their own default)")
    ap.add_argument("--server-log", default="/tmp/wsring-idle-memory.log",
                    help="file the servers' stderr goes to")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--wrap-node", help="command prefix for the node, e.g. 'heaptrack -o /tmp/node' "
                    "(it is killed with SIGKILL at the end)")
    ap.add_argument("--wrap-gateway", help="the same for the gateway")
    ap.add_argument("--during", help="shell command to run while the connections are held "
                    "($WSRING_GATEWAYS, $WSRING_NODES: comma-separated WebSocket URLs)")
    ap.add_argument("--bench-rate", type=float,
                    help="run `wsring bench` at this many messages per second during the hold")
    ap.add_argument("--bench-clients", type=int, default=1100)
    ap.add_argument("--bench-duration", type=float, default=30, help="seconds of sending")
    ap.add_argument("--bench-payload", type=int, default=64)
    ap.add_argument("--bench-wrap", action="append",
                    help="command prefix of one bench run (repeat for several runs; '' for none)")
    ap.add_argument("--concurrency", type=int, default=200,
                    help="connection attempts in flight at once per client worker")
    ap.add_argument("--rust-clients", action="store_true",
                    help="hold the connections with the Rust idle worker "
                         "(crates/bench/examples/idle-worker.rs) instead of Python: the same "
                         "job at a fraction of the CPU, so pings answered on the same cores "
                         "weigh less in a latency measurement")
    ap.add_argument("--worker", nargs=6,
                    metavar=("TARGETS", "SOURCE", "FIRST", "COUNT", "TIMEOUT", "CONCURRENCY"),
                    help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.worker:
        targets, source, first, count, timeout, concurrency = a.worker
        asyncio.run(worker(json.loads(targets), source, int(first), int(count), float(timeout),
                           int(concurrency)))
        return

    if a.deflate:
        if a.rust_clients:
            raise SystemExit("--deflate needs the Python clients")
        os.environ["WSRING_IDLE_DEFLATE"] = "1"
    deadline = time.monotonic() + a.timeout
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not a.bin:
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
        a.bin = os.path.join(target, "release", "wsring")
        if not a.no_build:
            subprocess.run(["cargo", "build", "--release", "-q", "-p", "wsring"], cwd=root, check=True)
    worker_cmd = [sys.executable, os.path.abspath(__file__), "--worker"]
    if a.rust_clients:
        worker_bin = os.path.join(os.path.dirname(a.bin), "examples", "idle-worker")
        if not a.no_build:
            subprocess.run(["cargo", "build", "--release", "-q", "-p", "wsring-bench",
                            "--example", "idle-worker"], cwd=root, check=True)
        worker_cmd = [worker_bin]
    a.stderr = open(a.server_log, "w")
    c = Cluster(a)
    workers = []

    def bye(*_):
        raise SystemExit("interrupted")

    signal.signal(signal.SIGTERM, bye)
    try:
        nodes = [c.node(i + 1) for i in range(a.nodes)]
        gateways = [] if a.direct else [c.gateway() for _ in range(a.gateways)]
        for _, addr in gateways:
            wait_until_routed(addr, a.nodes, deadline)
        if a.direct:
            if a.nodes > 1:
                raise SystemExit("--direct with several nodes would need hash-aware clients; use one node")
            targets = [parse_target(url) for _, url in nodes]
        else:
            targets = [[addr.split(":")[0], int(addr.split(":")[1]), "/ws"] for _, addr in gateways]

        before = {p.pid: rss(p.pid) for p, _ in nodes + gateways}
        per = min(MAX_PER_WORKER, max(1, a.connections))
        first = 0
        started = time.monotonic()
        while first < a.connections:
            count = min(per, a.connections - first)
            source = a.source_ips[len(workers) % len(a.source_ips)] if a.source_ips else ""
            left = max(1.0, deadline - time.monotonic())
            w = subprocess.Popen(worker_cmd + [json.dumps(targets), source, str(first), str(count),
                                               str(left), str(a.concurrency)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            workers.append(w)
            first += count
        for w in workers:
            got = read_json(w, deadline)
            if "ready" not in got:
                raise SystemExit(f"a worker failed: {got}")
        connect_s = time.monotonic() - started
        after = {p.pid: rss(p.pid) for p, _ in nodes + gateways}
        settled = None
        if a.settle:
            # The measurement itself: RSS after the connections were idle
            # this long.
            time.sleep(a.settle)
            settled = {p.pid: rss(p.pid) for p, _ in nodes + gateways}

        held = None
        during = None
        if a.hold or a.during:
            end = time.monotonic() + a.hold
            if end > deadline:
                raise SystemExit("--hold does not fit in --timeout")
            if a.during:
                env = dict(os.environ,
                           WSRING_GATEWAYS=",".join(f"ws://{addr}/ws" for _, addr in gateways),
                           WSRING_NODES=",".join(url for _, url in nodes))
                pids = [p.pid for p, _ in nodes + gateways]
                cpu0 = sum(cpu_seconds(p) for p in pids)
                t0 = time.monotonic()
                try:
                    rc = subprocess.run(a.during, shell=True, env=env,
                                        timeout=max(1.0, deadline - time.monotonic() - 30)).returncode
                except subprocess.TimeoutExpired:
                    rc = "timed out"
                wall = time.monotonic() - t0
                during = {"status": rc, "seconds": round(wall, 1),
                          "server_cpu_seconds": round(sum(cpu_seconds(p) for p in pids) - cpu0, 1)}
            if a.bench_rate:
                during = during or {}
                during["bench"] = [run_bench(a, wrap, gateways, [p.pid for p, _ in nodes + gateways],
                                             deadline, [w.pid for w in workers])
                                   for wrap in (a.bench_wrap or [""])]
            # Nothing to wait for but the clock: the hold is the measurement.
            time.sleep(max(0.0, end - time.monotonic()))
            totals = {"open": 0, "lost": 0, "pings": 0, "close_frames": 0}
            for w in workers:
                w.stdin.write("status\n")
                w.stdin.flush()
                for k, v in read_json(w, deadline)["status"].items():
                    totals[k] += v
            held = dict(totals, seconds=round(time.monotonic() - end + a.hold, 1),
                        rss_after_hold={p.pid: rss(p.pid)["VmRSS"]
                                                                  for p, _ in nodes + gateways})

        n = a.connections
        result = {"connections": n, "direct": a.direct, "connect_seconds": round(connect_s, 1),
                  "nodes": [], "gateways": []}
        for kind, group in (("nodes", nodes), ("gateways", gateways)):
            for p, _ in group:
                b, f = before[p.pid], after[p.pid]
                share = n / len(group)
                row = {
                    "pid": p.pid,
                    "rss_before_kib": b["VmRSS"], "rss_after_kib": f["VmRSS"],
                    "kib_per_conn": round((f["VmRSS"] - b["VmRSS"]) / share, 2) if n else 0.0,
                    "anon_kib_per_conn":
                        round((f["Anonymous"] - b["Anonymous"]) / share, 2) if n else 0.0,
                }
                if settled is not None and n:
                    row["settled_kib_per_conn"] = round(
                        (settled[p.pid]["VmRSS"] - b["VmRSS"]) / share, 2)
                result[kind].append(row)
        if held is not None:
            result["held"] = held
        if during is not None:
            result["during"] = during
        if a.json:
            print(json.dumps(result, indent=1))
        else:
            mode = "direct to the node" if a.direct else "through the gateway"
            print(f"{n} idle connections {mode}, all welcomed in {connect_s:.1f} s")
            for kind, rows in (("node", result["nodes"]), ("gateway", result["gateways"])):
                for r in rows:
                    print(f"{kind:8} pid {r['pid']}: RSS {r['rss_before_kib'] / 1024:.1f} -> "
                          f"{r['rss_after_kib'] / 1024:.1f} MiB, {r['kib_per_conn']:.2f} KiB per connection "
                          f"({r['anon_kib_per_conn']:.2f} KiB anonymous)"
                          + (f"; after {a.settle:.0f} s idle {r['settled_kib_per_conn']:.2f} KiB"
                             if "settled_kib_per_conn" in r else ""))
            if held is not None:
                total = sum(held["rss_after_hold"].values()) / 1024
                ok = held["lost"] == 0 and held["open"] == n
                print(f"held {held['seconds']:.0f} s: {'all open' if ok else 'NOT all open'} "
                      f"(open {held['open']}, lost {held['lost']}, pings answered {held['pings']}); "
                      f"server RSS total {total:.0f} MiB")
            for b in (during or {}).get("bench", []):
                print(f"bench [{b['wrap'] or 'plain'}]: sent {b['sent']}, received {b['received']}, "
                      f"p50 {b['p50_ms']:.1f} ms, p99 {b['p99_ms']:.1f} ms, p99.9 {b['p999_ms']:.1f} ms, "
                      f"max {b['max_ms']:.1f} ms; bench CPU {b['bench_cpu_seconds']:.1f} s, "
                      f"servers' CPU {b['server_cpu_seconds']:.1f} s, idle clients' CPU "
                      f"{b['idle_clients_cpu_seconds']:.1f} s over {b['seconds']:.1f} s")
            if during is not None and "status" in during:
                print(f"--during: exit status {during['status']}, {during['seconds']:.1f} s, "
                      f"servers' CPU {during['server_cpu_seconds']:.1f} s")
    finally:
        c.kill_wrapped()
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
        c.close()


if __name__ == "__main__":
    main()
