// A minimal chat backend for wsring: it verifies webhook signatures, stores
// every chat message clients send to "@server", moderates room messages
// through the publish proxy, decides who connects from a session cookie
// through the connect proxy, and pushes replies back with the HTTP API.
// Node.js 18+, no dependencies. See docs/INTEGRATION.md.
//
//   WSRING_WEBHOOK_SECRET=s3cret WSRING_API=http://127.0.0.1:7000 node server.mjs
import http from 'node:http';
import crypto from 'node:crypto';

const SECRET = process.env.WSRING_WEBHOOK_SECRET ?? 's3cret';
const API = process.env.WSRING_API ?? 'http://127.0.0.1:7000';
const API_KEY = process.env.WSRING_API_KEY; // when the cluster requires one
const PORT = Number(process.env.PORT ?? 8080);
const MAX_AGE_MS = 5 * 60 * 1000;

/** True if `header` is the HMAC-SHA256 of the raw body under SECRET. */
export function verify(rawBody, header) {
  const want = 'sha256=' + crypto.createHmac('sha256', SECRET).update(rawBody).digest('hex');
  const a = Buffer.from(want);
  const b = Buffer.from(String(header ?? ''));
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

const seen = new Set(); // event ids: delivery is at least once
const history = []; // the stored chat

async function api(path, body) {
  const headers = { 'content-type': 'application/json' };
  if (API_KEY) headers.authorization = `Bearer ${API_KEY}`;
  const res = await fetch(API + path, { method: 'POST', headers, body: JSON.stringify(body) });
  if (!res.ok) console.error(path, res.status, await res.text());
}

async function onEvent(e) {
  if (seen.has(e.id) || Date.now() - e.at_ms > MAX_AGE_MS) return;
  seen.add(e.id);
  switch (e.type) {
    case 'session.connected':
      console.log(`${e.user} connected (${e.session} on ${e.node})`);
      break;
    case 'session.disconnected':
      console.log(`${e.user} left: ${e.code} ${e.reason}`);
      break;
    case 'message.to_server':
      history.push({ user: e.user, data: e.data, at_ms: e.at_ms });
      await api('/api/send', { to: e.user, data: { stored: history.length } });
      break;
    default:
      console.log(e.type, e.user, e.room ?? '');
  }
}

function moderate(req) {
  const text = typeof req.data === 'string' ? req.data : req.data?.text;
  if (typeof text === 'string' && /buy now/i.test(text)) {
    return { error: { code: 'spam', message: 'advertising is not allowed' } };
  }
  return {}; // accept as is; {"data": …} would replace the message
}

// Sessions the application's own login created: cookie value -> user. A
// real backend looks its session store up here.
const SESSIONS = new Map([['alice-session', 'alice'], ['bob-session', 'bob']]);

function authenticate(req) {
  const sid = /(?:^|;\s*)sid=([^;]+)/.exec(req.headers.cookie ?? '')?.[1];
  const user = sid && SESSIONS.get(sid);
  if (!user) return [401, { message: 'log in first' }];
  // The session may join the lobby and its own rooms; it is decided again
  // after an hour (close code 3000, and the client reconnects).
  return [200, { user, rooms: ['lobby', `${user}-*`], expire_at: Math.floor(Date.now() / 1000) + 3600 }];
}

http
  .createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const raw = Buffer.concat(chunks);
      if (!verify(raw, req.headers['x-wsring-signature'])) {
        res.writeHead(401).end();
        return;
      }
      const body = JSON.parse(raw.toString('utf8'));
      res.setHeader('content-type', 'application/json');
      if (req.url === '/events') {
        for (const e of body.events) await onEvent(e);
        res.end('{}');
      } else if (req.url === '/publish') {
        const verdict = moderate(body);
        // With a publish proxy, messages to "@server" come here instead of
        // as `message.to_server` webhook events: store and answer them the
        // same way.
        if (!verdict.error && body.type === 'send' && body.to === '@server') {
          history.push({ user: body.user, data: body.data, at_ms: Date.now() });
          res.end('{}');
          await api('/api/send', { to: body.user, data: { stored: history.length } });
          return;
        }
        res.end(JSON.stringify(verdict));
      } else if (req.url === '/connect') {
        const [status, answer] = authenticate(body);
        res.writeHead(status).end(JSON.stringify(answer));
      } else {
        res.writeHead(404).end('{}');
      }
    });
  })
  .listen(PORT, '127.0.0.1', () => console.log(`chat backend on http://127.0.0.1:${PORT}`));
