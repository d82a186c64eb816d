// app.js — the wsring dashboard's entry point. It wires the panels, each in
// its own module, to the gateway's live feed:
//   feed.js        the SSE feed (/api/events), reconnecting by itself
//   key.js         the API key, asked for when the API is protected
//   state.js       the shared UI state and the header's epoch
//   nodes.js       the node table
//   controls.js    info badges, add / drain / crash
//   ring-panel.js  the ring, its legend and the user lookup
//   events.js      the membership event log
//   simulator.js   the client simulator (uses wsring-client.js)
//
// Rendering is keyed and incremental: rows and list items are created once
// per node / event and patched in place.

import { renderInfo, setupControls } from "./controls.js";
import { setStatus, $ } from "./dom.js";
import { onEvent, onEvents, resetEvents } from "./events.js";
import { followFeed, pollReadOnly } from "./feed.js";
import { apiKey, askForKey } from "./key.js";
import { onNodes, renderNodes } from "./nodes.js";
import { onRing, setupLookup } from "./ring-panel.js";
import { Simulator } from "./simulator.js";
import { state } from "./state.js";

async function setup() {
  setupControls();
  setupLookup();

  const status = $("action-status");
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const sim = new Simulator({
    // The cards live in the simulator panel, the forms in the messaging panel.
    root: document.body,
    wsUrl: `${scheme}//${location.host}/ws`,
    status: (text, kind) => setStatus(status, text, kind),
  });
  // Handy from the developer console; the tests read the DOM, not this.
  window.wsring = { sim, state };
  const handlers = { info: renderInfo, ring: onRing, nodes: onNodes, events: onEvents, event: onEvent };
  const live = () =>
    followFeed(handlers, () => {
      // (Re)connected: the initial items that follow are the whole truth,
      // even if the gateway restarted with epochs counting from 1 again.
      state.epoch = 0;
      resetEvents();
    });
  // A protected API: read-only until the key is entered.
  const info = await fetch("/api/info").then((r) => r.json()).catch(() => ({}));
  if (info.auth?.api_key && !apiKey()) {
    const poll = pollReadOnly(handlers);
    askForKey(() => {
      poll.stop();
      live();
    });
  } else {
    live();
  }
  // Greyed rows of departed nodes expire even when nothing else changes.
  setInterval(() => state.gone.size && renderNodes(), 5000);
}

setup();
