#!/usr/bin/env python3
"""Room fan-out with and without permessage-deflate, for the node's CPU per
delivered message.

Run it as the --during command of scripts/idle-memory.py, which starts the
node and reports the CPU seconds it spent while this ran:

    python3 scripts/idle-memory.py -n 0 --direct --during \\
        'PY scripts/deflate-fanout.py --deflate'

where PY is a Python with the `websockets` package. --members clients (100)
join one room, each offering permessage-deflate with --deflate (and getting
it, which is checked) or nothing without; one more client publishes
--messages (500) messages of about 1 KiB of chat JSON, each different, at
--rate per second; every member must receive every message. It prints the
deliveries and the bytes of message payload received.
"""
import argparse
import asyncio
import json
import os
import random

from websockets.asyncio.client import connect


def payload(i, rng):
    words = ["hello", "team", "deploy", "done", "review", "pull", "request", "thanks",
             "meeting", "noon", "release", "notes", "bug", "fixed", "staging", "looks", "good"]
    return {
        "id": f"msg_{rng.getrandbits(48):012x}",
        "author": {"id": f"user_{i % 37}", "name": f"User {i % 37}",
                   "avatar": f"https://cdn.example.com/avatars/{i % 37}/{rng.getrandbits(32):08x}.png"},
        "text": " ".join(rng.choice(words) for _ in range(85)),
        "sent_at": f"2026-12-07T18:{i // 60 % 60:02}:{i % 60:02}.{rng.randrange(1000):03}Z",
        "edited": False,
        "reactions": [{"emoji": "thumbsup", "count": rng.randrange(1, 9), "users": ["alice", "bob"]}],
        "attachments": [],
        "thread": {"id": f"thr_{rng.getrandbits(32):08x}", "replies": rng.randrange(20)},
    }


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--deflate", action="store_true")
    ap.add_argument("--members", type=int, default=100)
    ap.add_argument("--messages", type=int, default=500)
    ap.add_argument("--rate", type=float, default=250)
    a = ap.parse_args()
    url = os.environ["WSRING_NODES"].split(",")[0]
    compression = "deflate" if a.deflate else None
    members = []
    for i in range(a.members):
        ws = await connect(f"{url}?user=fan-{i}", compression=compression, max_size=2**20)
        ext = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
        assert ("permessage-deflate" in ext) == a.deflate, ext
        await ws.send(json.dumps({"type": "join", "room": "fanout", "id": "j"}))
        while json.loads(await ws.recv()).get("type") != "ack":
            pass
        members.append(ws)
    got = {"n": 0, "bytes": 0}

    async def read(ws):
        n = 0
        while n < a.messages:
            m = await ws.recv()
            if '"type":"message"' in m:
                n += 1
                got["n"] += 1
                got["bytes"] += len(m)

    readers = [asyncio.create_task(read(ws)) for ws in members]
    pub = await connect(f"{url}?user=fan-publisher", compression=compression)
    rng = random.Random(7)
    for i in range(a.messages):
        await pub.send(json.dumps({"type": "publish", "room": "fanout", "data": payload(i, rng)}))
        await asyncio.sleep(1 / a.rate)
    await asyncio.wait_for(asyncio.gather(*readers), 120)
    print(json.dumps({"deflate": a.deflate, "deliveries": got["n"],
                      "payload_bytes": got["bytes"]}))
    for ws in members + [pub]:
        await ws.close()


asyncio.run(main())
