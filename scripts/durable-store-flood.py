#!/usr/bin/env python3
"""Floods a durable `wsring dev` with 60 kB publishes to N distinct rooms
(publish needs no membership) and reports the answers and the process RSS
before and after: the stream store limits (--history-max-bytes, default
256 MiB) must hold memory, answering 507 storage_full past them.

    cargo build --release
    python3 scripts/durable-store-flood.py [--bin target/release/wsring] [--rooms 8000]
"""
import argparse, json, re, signal, subprocess, sys, time, urllib.error, urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--bin", default="target/release/wsring")
ap.add_argument("--rooms", type=int, default=8000)
ap.add_argument("--port", type=int, default=17555)
ap.add_argument("--log", default="/tmp/wsring-durable-flood.log")
a = ap.parse_args()

dev = subprocess.Popen([a.bin, "dev", "--durable", "--port", str(a.port)],
                       stdout=open(a.log, "w"), stderr=subprocess.STDOUT)
base = f"http://127.0.0.1:{a.port}"
try:
    for _ in range(300):
        try:
            urllib.request.urlopen(base + "/readyz", timeout=1)
            break
        except Exception:
            time.sleep(0.2)
    else:
        sys.exit("wsring dev did not become ready")

    def rss_mib():
        with open(f"/proc/{dev.pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) // 1024

    before = rss_mib()
    big = "x" * 60000
    answers = {}
    start = time.time()
    for i in range(a.rooms):
        body = json.dumps({"room": f"flood{i}", "data": big}).encode()
        req = urllib.request.Request(base + "/api/publish", data=body,
                                     headers={"content-type": "application/json"})
        try:
            status = urllib.request.urlopen(req, timeout=10).status
        except urllib.error.HTTPError as e:
            status = e.code
        answers[status] = answers.get(status, 0) + 1
    print(f"answers {answers} in {time.time() - start:.1f} s")
    print(f"RSS {before} MiB before, {rss_mib()} MiB after")
finally:
    dev.send_signal(signal.SIGINT)
    dev.wait(timeout=30)
