// key.js — the API key, when the gateway protects its API. The key is asked
// for in the header, kept for this browser tab only (sessionStorage), sent as
// `Authorization: Bearer` on control and API calls, and as `?key=` on the
// live feed, since EventSource cannot send headers.

import { $ } from "./dom.js";

const STORE = "wsring.apiKey";

/** The key entered in this tab, or "". */
export function apiKey() {
  try {
    return sessionStorage.getItem(STORE) ?? "";
  } catch {
    return "";
  }
}

/** Headers carrying the key, merged into `headers`. */
export function withKey(headers = {}) {
  const k = apiKey();
  return k ? { ...headers, authorization: `Bearer ${k}` } : headers;
}

/** The live feed's URL, with the key when there is one. */
export function feedUrl() {
  const k = apiKey();
  return k ? `/api/events?key=${encodeURIComponent(k)}` : "/api/events";
}

/**
 * Shows the key form in the header; `onKey` runs once a key is entered. The
 * page reloads its feed with the key; a wrong key shows up as a locked feed
 * again.
 */
export function askForKey(onKey) {
  const form = $("key-form");
  form.hidden = false;
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = $("key-input").value.trim();
    if (!value) return;
    try {
      sessionStorage.setItem(STORE, value);
    } catch {
      // Without storage the key lasts until the page is left.
    }
    form.hidden = true;
    onKey(value);
  });
}
