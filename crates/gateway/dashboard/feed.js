// feed.js — follows the gateway's live feed (Server-Sent Events at
// /api/events, so nothing polls) and hands each named item to its panel.
// It knows nothing of the panels: the entry point passes the handlers.

import { $ } from "./dom.js";
import { feedUrl } from "./key.js";

/**
 * Opens the feed (with the API key when the gateway wants one); returns the
 * EventSource so a new key can replace it. `handlers` maps item names (`info`, `ring`, `nodes`,
 * `events`, `event`) to functions of the parsed item; `onOpen` runs on every
 * (re)connect, before the initial items that resynchronise everything.
 */
export function followFeed(handlers, onOpen) {
  const feed = $("feed-status");
  const label = feed.querySelector(".feed-label");
  const setFeed = (s, text) => {
    feed.dataset.state = s;
    label.textContent = text;
  };
  const es = new EventSource(feedUrl());
  es.onopen = () => {
    setFeed("live", "live");
    onOpen();
  };
  // EventSource reconnects by itself; the initial items after a reconnect
  // resynchronise everything.
  es.onerror = () => setFeed(es.readyState === EventSource.CLOSED ? "lost" : "connecting", "reconnecting");
  for (const [name, fn] of Object.entries(handlers)) {
    es.addEventListener(name, (ev) => {
      let data;
      try {
        data = JSON.parse(ev.data);
      } catch {
        return; // a malformed item is skipped; the next tick resynchronises
      }
      fn(data);
    });
  }
  return es;
}

/**
 * Without the API key the live feed is closed; the open read-only views
 * (`/api/info`, `/api/ring`, `/api/nodes`) are polled instead, every two
 * seconds, until `stop()` is called. Controls stay locked.
 */
export function pollReadOnly(handlers) {
  const feed = $("feed-status");
  feed.dataset.state = "connecting";
  feed.querySelector(".feed-label").textContent = "locked: read-only";
  let stopped = false;
  const tick = async () => {
    for (const [name, path] of [["info", "/api/info"], ["ring", "/api/ring?arcs=1"], ["nodes", "/api/nodes"]]) {
      try {
        const r = await fetch(path);
        if (r.ok && !stopped) handlers[name]?.(await r.json());
      } catch {
        // The next tick tries again.
      }
    }
  };
  tick();
  const timer = setInterval(tick, 2000);
  return { stop: () => { stopped = true; clearInterval(timer); } };
}
