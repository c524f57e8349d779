#!/usr/bin/env node
// Claude Code channels (docs/mcp-notifications.md) with the official TypeScript SDK client.
// Usage: node ts_channel.mjs <hub base URL> <collab session id> <claude's token> <gemini's token>
// Three clients act as claude: one declaring capabilities.experimental["claude/channel"], one
// introducing itself as Claude Code does (clientInfo "claude-code", no such capability), one
// plain. Gemini sends claude messages over REST. Prints one JSON line per check; exits 0 only
// if every check held.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const [base, sessionId, claude, gemini] = process.argv.slice(2);
const out = (ev, data = {}) => console.log(JSON.stringify({ ev, ...data }));
let failed = false;
const check = (cond, what, detail) => {
  out(cond ? 'ok' : 'fail', { check: what, detail });
  if (!cond) failed = true;
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const waitFor = async (pred, ms = 5000) => {
  for (let t = 0; t < ms; t += 25) { if (pred()) return true; await sleep(25); }
  return pred();
};

// A client acting as claude that records every notification it gets (the SDK hands those it
// has no handler for to `fallbackNotificationHandler`).
async function connect(info, capabilities) {
  const got = [];
  const transport = new StreamableHTTPClientTransport(new URL('/mcp', base), {
    requestInit: { headers: { Authorization: `Bearer ${claude}` } },
  });
  const client = new Client(info, { capabilities });
  client.fallbackNotificationHandler = async (n) => { got.push(n); };
  await client.connect(transport);
  const of = (method, id) => got.filter((n) => n.method === method
    && (method === 'notifications/claude/channel' ? n.params.meta?.event_id === String(id) : n.params.id === id));
  return { client, got, of, events: (id) => of('notifications/collab/event', id), channel: (id) => of('notifications/claude/channel', id) };
}

async function send(priority, body) {
  const r = await fetch(new URL('/mcp/messages/send', base), {
    method: 'POST',
    headers: { 'content-type': 'application/json', Authorization: `Bearer ${gemini}` },
    body: JSON.stringify({ to: 'claude', priority, body }),
  });
  const v = await r.json();
  if (r.status !== 200) throw new Error(`send: ${r.status} ${JSON.stringify(v)}`);
  return v.id;
}

// The sender's view of its message `id`: its `shownTo` receipts.
async function shownTo(id) {
  const r = await fetch(new URL('/mcp/messages?limit=100', base), { headers: { Authorization: `Bearer ${gemini}` } });
  const page = await r.json();
  return page.messages.find((m) => m.id === id)?.shownTo ?? [];
}

const clients = [];
try {
  // Claude Code's own initialize (2.1.x): roots and elicitation, no channel capability.
  const code = await connect({ name: 'claude-code', version: '2.1.332' }, { roots: { listChanged: true } });
  const plain = await connect({ name: 'plain-ts', version: '0.0.1' }, {});
  clients.push(code, plain);
  check(code.client.getServerCapabilities()?.experimental?.['claude/channel'] !== undefined,
    'the hub declares experimental["claude/channel"] (Claude Code listens only to servers that do)', code.client.getServerCapabilities());
  check(/<channel>/.test(code.client.getInstructions() ?? '') && !/<channel>/.test(plain.client.getInstructions() ?? ''),
    'instructions explain <channel> messages to channel clients only', { code: code.client.getInstructions(), plain: plain.client.getInstructions() });

  // A critical message: a channel notification for Claude Code, none for the plain client.
  const c1 = await send('critical', 'stop: main is red');
  check(await waitFor(() => code.events(c1).length > 0 && plain.events(c1).length > 0), 'both get the event itself');
  check(await waitFor(() => code.channel(c1).length === 1), 'claude-code gets a channel notification', code.got.map((n) => n.method));
  const n = code.channel(c1)[0]?.params ?? {};
  check(n.content === `#${c1} message_sent by gemini: stop: main is red`, 'content: the line the model reads', n.content);
  check(n.meta?.event_id === String(c1) && n.meta?.kind === 'message_sent' && n.meta?.from === 'gemini' && Object.keys(n.meta).length === 3,
    'meta: string attributes event_id, kind, from', n.meta);
  // Routine: no interrupt.
  const r1 = await send('routine', 'fyi: lunch');
  check(await waitFor(() => code.events(r1).length > 0 && plain.events(r1).length > 0), 'both get the routine event');
  await sleep(300);
  check(code.channel(r1).length === 0, 'no channel notification for a routine event');
  check(!plain.got.some((x) => x.method === 'notifications/claude/channel'), 'the plain client gets no channel notification', plain.got.map((x) => x.method));
  check(!plain.got.some((x) => x.method === 'notifications/message'), 'no log entries without logging/setLevel');
  // Claude Code shows channel messages only when the user enabled the hub as a channel
  // (--channels): sent, but not counted as shown to the model.
  check((await shownTo(c1)).length === 0, 'no shown receipt for a client that did not declare the capability', await shownTo(c1));

  // A client that declares the capability: its new stream replays what waits (c1 among it),
  // critical events as channel notifications, and each one shown counts (via channel).
  const declared = await connect({ name: 'bridge-ts', version: '0.0.1' }, { experimental: { 'claude/channel': {} } });
  clients.push(declared);
  check(await waitFor(() => declared.channel(c1).length === 1), 'the declaring client gets c1 as a channel notification', declared.got.map((x) => x.method));
  let receipts = [];
  for (let t = 0; t < 3000 && !receipts.some((s) => s.aiId === 'claude' && s.via === 'channel'); t += 100) {
    receipts = await shownTo(c1);
    await sleep(100);
  }
  check(receipts.some((s) => s.aiId === 'claude' && s.via === 'channel'), 'the sender sees c1 shown to claude via channel', receipts);

  // During a non-interruptible checkpoint a critical event goes out at once (ahead of the
  // held ones); after the hold the model is not interrupted again.
  const begin = await plain.client.callTool({ name: 'checkpoint', arguments: { action: 'begin', task: 'focus', estimatedDuration: '30s', interruptible: false } });
  check(!begin.isError && begin.structuredContent.holding === true, 'checkpoint holds', begin.structuredContent);
  const c2 = await send('critical', 'prod is down');
  check(await waitFor(() => declared.channel(c2).length === 1), 'critical event interrupts the hold');
  const end = await plain.client.callTool({ name: 'checkpoint', arguments: { action: 'end' } });
  check(!end.isError, 'checkpoint ends', end.structuredContent);
  await sleep(500);
  check(declared.events(c2).length === 1, 'the event once on the stream', declared.events(c2).length);
  check(declared.channel(c2).length === 1 && code.channel(c2).length === 1, 'one channel notification per client', {
    declared: declared.channel(c2).length, code: code.channel(c2).length });
} catch (e) {
  check(false, 'no exception', String(e?.stack ?? e));
} finally {
  for (const c of clients) { try { await c.client.close(); } catch { /* closing */ } }
}
out('done', { failed });
process.exit(failed ? 1 : 0);
