#!/usr/bin/env python3
"""CPU cost of the gateway's tunnel: `wsring bench` at a fixed rate through a
gateway and straight to the node, CPU time of the node and gateway processes
(utime + stime from /proc) per 1,000 delivered messages, and the ratio.

One `wsring node` and one `wsring gateway` run as separate processes on the
local Redis (started as scripts/idle-memory.py starts them). Each case runs
the bench twice, for --short and --long seconds of sending, and takes the
difference: connecting the clients and draining cost the same in both runs,
so what remains is the marginal cost of the messages alone. The cases
alternate, --rounds times, and the medians are reported.

    python3 scripts/tunnel-overhead.py [--rate 5000] [--clients 500] [--rounds 3]
"""
import argparse
import importlib.util
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("idle_memory", os.path.join(HERE, "idle-memory.py"))
idle = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(idle)

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def bench(a, url, seconds):
    """Runs `wsring bench`; returns the messages delivered."""
    out = subprocess.run(
        [a.bin, "bench", "--url", url, "--clients", str(a.clients), "--rate", str(a.rate),
         "--duration", f"{seconds}s", "--payload", str(a.payload)],
        capture_output=True, text=True, timeout=seconds + 120, check=True).stdout
    m = re.search(r"^\| received \| (\d+)", out, re.M)
    if not m:
        raise SystemExit(f"no 'received' line in the bench report:\n{out}")
    return int(m.group(1))


def marginal_ms_per_1000(a, url, pids):
    """CPU milliseconds of each of `pids` per 1,000 messages, from a short
    and a long run."""
    runs = []
    for seconds in (a.short, a.long):
        before = [cpu_seconds(p) for p in pids]
        delivered = bench(a, url, seconds)
        runs.append(([cpu_seconds(p) - b for p, b in zip(pids, before)], delivered))
    (cpu_s, n_s), (cpu_l, n_l) = runs
    if n_l <= n_s:
        raise SystemExit(f"the long run delivered no more than the short one ({n_l} <= {n_s})")
    return [1e6 * (l - s) / (n_l - n_s) for s, l in zip(cpu_s, cpu_l)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=5000, help="messages per second")
    ap.add_argument("--clients", type=int, default=500)
    ap.add_argument("--payload", type=int, default=64)
    ap.add_argument("--short", type=int, default=3, help="seconds of sending, short run")
    ap.add_argument("--long", type=int, default=13, help="seconds of sending, long run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--redis", default="127.0.0.1:6379")
    ap.add_argument("--bin", help="wsring binary (default: build the release one)")
    ap.add_argument("--server-log", default="/tmp/wsring-tunnel-overhead.log")
    a = ap.parse_args()
    if not a.bin:
        root = os.path.dirname(HERE)
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
        a.bin = os.path.join(target, "release", "wsring")
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "wsring"], cwd=root, check=True)
    # What idle-memory.py's cluster needs besides.
    a.ping_interval, a.log, a.wrap_node, a.wrap_gateway = "20s", None, None, None
    a.stderr = open(a.server_log, "w")
    c = idle.Cluster(a)
    try:
        node, node_url = c.node(1)
        gateway, gw_addr = c.gateway()
        idle.wait_until_routed(gw_addr, 1, time.monotonic() + 60)
        pids = [node.pid, gateway.pid]
        cases = {"direct": node_url, "gateway": f"ws://{gw_addr}/ws"}
        got = {name: [] for name in cases}
        for r in range(a.rounds):
            for name, url in cases.items():
                node_ms, gw_ms = marginal_ms_per_1000(a, url, pids)
                got[name].append(node_ms + gw_ms)
                print(f"round {r + 1} {name:8} {node_ms + gw_ms:6.1f} ms CPU per 1,000 messages "
                      f"(node {node_ms:.1f}, gateway {gw_ms:.1f})", file=sys.stderr)
        direct = statistics.median(got["direct"])
        via = statistics.median(got["gateway"])
        print(f"rate {a.rate:.0f}/s, {a.clients} clients, payload {a.payload} B; node + gateway CPU "
              f"per 1,000 messages (median of {a.rounds}):")
        print(f"  straight to the node: {direct:.1f} ms")
        print(f"  through the gateway:  {via:.1f} ms")
        print(f"  ratio: {via / direct:.2f}x")
    finally:
        c.close()


if __name__ == "__main__":
    main()
