"""The Python `pusher` server library (pinned in requirements.txt) against a
running wsring cluster, called by pusher.test.js in the middle of its run:
it prints, as one JSON object, what the library's calls answered, so the
Node.js script can compare them with what the Node.js library got, and it
triggers events the Node.js clients then wait for.

Environment: WSRING_PUSHER_API (host:port), WSRING_PUSHER_APP_ID,
WSRING_PUSHER_KEY, WSRING_PUSHER_SECRET, and WSRING_PUSHER_EXCLUDE (a
socket id to leave out of the first trigger).
"""

import json
import os

import pusher

host, port = os.environ["WSRING_PUSHER_API"].split(":")
client = pusher.Pusher(
    app_id=os.environ["WSRING_PUSHER_APP_ID"],
    key=os.environ["WSRING_PUSHER_KEY"],
    secret=os.environ["WSRING_PUSHER_SECRET"],
    host=host,
    port=int(port),
    ssl=False,
)

out = {
    "presence": client.channels_info(prefix_filter="presence-", attributes=["user_count"]),
    "news": client.channel_info("news", attributes=["subscription_count"]),
    "users": client.users_info("presence-lobby"),
    "trigger": client.trigger(
        "news", "from-python", {"lib": "python"}, socket_id=os.environ["WSRING_PUSHER_EXCLUDE"]
    ),
    "batch": client.trigger_batch([{"channel": "news", "name": "python-batch", "data": {"i": 1}}]),
}
forged = pusher.Pusher(
    app_id=os.environ["WSRING_PUSHER_APP_ID"],
    key=os.environ["WSRING_PUSHER_KEY"],
    secret="not-the-secret",
    host=host,
    port=int(port),
    ssl=False,
)
try:
    forged.trigger("news", "forged", {})
    out["forged"] = "accepted"
except pusher.errors.PusherBadAuth as e:
    out["forged"] = "401"
except Exception as e:  # anything else is a wrong answer too
    out["forged"] = repr(e)
print(json.dumps(out))
