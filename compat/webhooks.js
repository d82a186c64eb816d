// A webhook receiver for the Pusher compatibility runs: it takes the
// cluster's webhooks in Pusher's format and checks every delivery with the
// `pusher` server library's own `webhook({headers, rawBody}).isValid()`
// (the key header and the HMAC-SHA256 signature under the app secret).
// A delivery that does not verify is answered 401 and counted.
//
// Started by crates/wsring/tests/pusher.rs before the nodes (which get
// `--pusher-webhook-url` pointing here), with WSRING_PUSHER_APP_ID,
// WSRING_PUSHER_KEY and WSRING_PUSHER_SECRET set. Prints
// "listening <port>" once it listens on 127.0.0.1.
//
// GET /events answers {"events":[…],"deliveries":n,"invalid":n}: every
// event of every verified delivery, in arrival order, each with the
// delivery's time_ms.

"use strict";

const http = require("node:http");
const PusherServer = require("pusher");

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};

const pusher = new PusherServer({
  appId: env("WSRING_PUSHER_APP_ID"),
  key: env("WSRING_PUSHER_KEY"),
  secret: env("WSRING_PUSHER_SECRET"),
});

const events = [];
let deliveries = 0;
let invalid = 0;
// Bounded: a run sends a few hundred events at most.
const MAX_EVENTS = 100000;
const MAX_BODY = 1024 * 1024;

const server = http.createServer((req, res) => {
  if (req.method === "GET" && req.url === "/events") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ events, deliveries, invalid }));
    return;
  }
  const chunks = [];
  let size = 0;
  req.on("data", (c) => {
    size += c.length;
    if (size <= MAX_BODY) chunks.push(c);
  });
  req.on("end", () => {
    const rawBody = Buffer.concat(chunks).toString("utf8");
    const hook = pusher.webhook({ headers: req.headers, rawBody });
    if (size > MAX_BODY || !hook.isValid()) {
      invalid++;
      res.writeHead(401, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: "invalid webhook" }));
      return;
    }
    deliveries++;
    const time_ms = hook.getTime().getTime();
    for (const e of hook.getEvents()) {
      if (events.length < MAX_EVENTS) events.push({ ...e, time_ms });
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end("{}");
  });
});

server.listen(0, "127.0.0.1", () => {
  console.log(`listening ${server.address().port}`);
});
