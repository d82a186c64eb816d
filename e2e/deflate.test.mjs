// Chromium and a node negotiate permessage-deflate: a page opens a WebSocket
// to the node in WSRING_WS_URL (an echo node), checks the extension the node
// answered, and round-trips a chat-sized JSON message (sent back
// compressed, being over the node's threshold) and a short one (sent back
// plain). Run by crates/wsring/tests/autobahn.rs.
import { launch, assert } from "./harness.mjs";

const url = process.env.WSRING_WS_URL;
assert(url, "WSRING_WS_URL is set");
const browser = await launch();
try {
  const page = await browser.context.newPage();
  const got = await page.evaluate(async (url) => {
    const ws = new WebSocket(url);
    await new Promise((ok, fail) => {
      ws.onopen = ok;
      ws.onerror = () => fail(new Error("WebSocket error"));
    });
    const chat = JSON.stringify(
      Array.from({ length: 30 }, (_, i) => ({ type: "message", room: "general", from: `user${i}`, text: "hello everyone, how is it going today?" })),
    );
    const echoes = [];
    for (const m of [chat, "short"]) {
      const echoed = new Promise((ok) => (ws.onmessage = (e) => ok(e.data)));
      ws.send(m);
      echoes.push((await echoed) === m);
    }
    ws.close();
    return { extensions: ws.extensions, echoes };
  }, url);
  console.log(JSON.stringify(got));
  assert(got.extensions.startsWith("permessage-deflate"), `deflate negotiated: ${got.extensions}`);
  assert(got.extensions.includes("server_no_context_takeover"), got.extensions);
  assert(got.extensions.includes("client_no_context_takeover"), got.extensions);
  assert(got.echoes.every((e) => e), `messages round-trip: ${got.echoes}`);
  console.log("deflate.test.mjs: ok");
} finally {
  await browser.close();
}
