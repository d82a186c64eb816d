#!/usr/bin/env python3
"""One chat-like broadcast of about 1 KiB to every session of the first node
in $WSRING_NODES (comma-separated WebSocket URLs, as scripts/idle-memory.py
sets them for its --during command): with permessage-deflate each session
compresses it, with server context takeover in a compressor of its own,
which the hold that follows then measures. Standard library only."""
import json
import os
import urllib.request

node = os.environ["WSRING_NODES"].split(",")[0].replace("ws://", "http://").rsplit("/ws", 1)[0]
text = " ".join(["the deploy is done can you review my pull request thanks"] * 16)
body = json.dumps({"data": {"type": "message", "from": "alice", "text": text}}).encode()
req = urllib.request.Request(node + "/api/broadcast", body, {"Content-Type": "application/json"})
print(urllib.request.urlopen(req, timeout=10).read().decode())
