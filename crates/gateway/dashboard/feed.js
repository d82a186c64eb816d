// feed.js — follows the gateway's live feed (Server-Sent Events at
// /api/events, so nothing polls) and hands each named item to its panel.
// It knows nothing of the panels: the entry point passes the handlers.

import { $ } from "./dom.js";

/**
 * Opens the feed. `handlers` maps item names (`info`, `ring`, `nodes`,
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
  const es = new EventSource("/api/events");
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
}
