// A socket.io 4.8 server scaled out with @socket.io/redis-adapter over
// node-redis pub/sub, the way its users deploy it: one process per port,
// every process on the same Redis. It is the peer that
// scripts/compare-peers.sh measures wsring against, so it does the same job
// as a wsring node serving direct messages:
//
// * a client names its user at the handshake (`auth: { user }`) and its
//   socket joins the room named after that user id;
// * a `send` event carrying `{ to, data }` is emitted, as event `message`
//   with `{ from, data }`, to room `to`, wherever in the cluster its sockets
//   are.
//
// Usage: node server.mjs --port 7101 [--redis redis://127.0.0.1:6379] [--key socket.io]
// Prints `listening on <port>` once the adapter is subscribed.

import { createServer } from "node:http";
import { parseArgs } from "node:util";
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";

const { values: opts } = parseArgs({
  options: {
    port: { type: "string", default: "0" },
    host: { type: "string", default: "127.0.0.1" },
    redis: { type: "string", default: "redis://127.0.0.1:6379" },
    // The adapter's channel prefix: several clusters share one Redis.
    key: { type: "string", default: "socket.io" },
  },
});

// The same user-id rule as wsring's, so both refuse the same handshakes.
const USER_RULE = /^[A-Za-z0-9_.:@-]{1,128}$/;

const pubClient = createClient({ url: opts.redis });
const subClient = pubClient.duplicate();
for (const c of [pubClient, subClient]) {
  c.on("error", (e) => console.error(`redis: ${e.message}`));
}
await Promise.all([pubClient.connect(), subClient.connect()]);

const httpServer = createServer();
const io = new Server(httpServer, {
  adapter: createAdapter(pubClient, subClient, { key: opts.key }),
  serveClient: false,
});

io.use((socket, next) => {
  const user = socket.handshake.auth?.user;
  if (typeof user !== "string" || !USER_RULE.test(user)) {
    next(new Error("auth.user missing or invalid"));
    return;
  }
  socket.data.user = user;
  next();
});

io.on("connection", (socket) => {
  const from = socket.data.user;
  socket.join(from);
  socket.on("send", (msg) => {
    if (msg === null || typeof msg !== "object" || typeof msg.to !== "string") return;
    io.to(msg.to).emit("message", { from, data: msg.data });
  });
});

httpServer.listen(Number(opts.port), opts.host, () => {
  console.log(`listening on ${httpServer.address().port}`);
});

function shutdown() {
  io.close();
  Promise.allSettled([pubClient.quit(), subClient.quit()]).finally(() => process.exit(0));
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
