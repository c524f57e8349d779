#!/usr/bin/env node
// Scripted session with the official TypeScript SDK client against a running hub.
// Usage: node ts_scenario.mjs <hub base URL> <collab session id> <claude's bearer token>
// Prints one JSON line per step ({"ev": ...}); exits 0 only if every check held.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { LoggingMessageNotificationSchema, ResourceUpdatedNotificationSchema, ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import * as z from 'zod/v4';

const [base, sessionId, token] = process.argv.slice(2);
const mcpUrl = new URL('/mcp', base);
const out = (ev, data = {}) => console.log(JSON.stringify({ ev, ...data }));
let failed = false;
const check = (cond, what, detail) => {
  out(cond ? 'ok' : 'fail', { check: what, detail });
  if (!cond) failed = true;
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const waitFor = async (pred, ms = 5000) => {
  for (let t = 0; t < ms; t += 25) { if (pred()) return true; await sleep(25); }
  return false;
};

const EventNotification = z.object({
  method: z.literal('notifications/collab/event'),
  params: z.looseObject({ id: z.number(), kind: z.string() }),
});

// A client acting as `token`'s participant, recording the session events pushed to it.
async function connect(name, { auth, sessionIdToReuse } = {}) {
  const events = [];
  const updated = [];
  const logs = [];
  let listChanged = 0;
  const headers = auth ? { Authorization: `Bearer ${auth}` } : {};
  const transport = new StreamableHTTPClientTransport(mcpUrl, {
    requestInit: { headers },
    reconnectionOptions: { initialReconnectionDelay: 100, maxReconnectionDelay: 500, reconnectionDelayGrowFactor: 1.5, maxRetries: 0 },
    ...(sessionIdToReuse ? { sessionId: sessionIdToReuse } : {}),
  });
  const client = new Client({ name, version: '0.0.1' }, { capabilities: {} });
  client.setNotificationHandler(EventNotification, (n) => events.push(n.params));
  client.setNotificationHandler(ToolListChangedNotificationSchema, () => { listChanged += 1; });
  client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => updated.push(n.params.uri));
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => logs.push(n.params));
  await client.connect(transport);
  return { client, transport, events, updated, logs, listChanged: () => listChanged };
}

const structured = (r) => r.structuredContent;

try {
  // 1. Claude connects with its bearer token (the normal way) and uses every tool it sees.
  const a = await connect('claude-ts', { auth: token });
  check(a.transport.sessionId?.length > 0, 'session id issued');
  check(a.transport.protocolVersion === '2025-11-25', 'negotiated 2025-11-25', a.transport.protocolVersion);
  const names = (await a.client.listTools()).tools.map((t) => t.name).sort();
  check(JSON.stringify(names) === JSON.stringify(['batch', 'changes', 'checkpoint', 'context_append', 'context_delete', 'context_diff', 'context_get', 'context_set', 'context_sync',
    'discovery_report', 'dispute', 'events_ack', 'events_poll', 'handshake', 'lock', 'memory', 'message_ack', 'message_send', 'messages_read', 'notes', 'role', 'session', 'session_leave',
    'session_status', 'status_report', 'suggestion', 'task', 'whoami']),
    'driver sees the participant tools', names);
  const me = structured(await a.client.callTool({ name: 'whoami', arguments: {} }));
  check(me.aiId === 'claude' && me.role === 'driver' && me.sessionId === sessionId, 'whoami', me);
  const poll = structured(await a.client.callTool({ name: 'events_poll', arguments: { after: 0 } }));
  check(poll.events.length >= 1 && poll.events[0].kind === 'session_created', 'events_poll from the start', poll.events.map((e) => e.kind));
  const acked = structured(await a.client.callTool({ name: 'events_ack', arguments: { upTo: poll.lastEventId } }));
  check(acked.ackedEventId === poll.lastEventId, 'events_ack', acked);
  const bad = await a.client.callTool({ name: 'events_ack', arguments: { upTo: 'soon' } });
  check(bad.isError === true && /upTo/.test(bad.content[0].text), 'bad argument is a tool error naming the field', bad.content[0].text);

  // Resources: the session as documents, subscribable; the resume prompt.
  const resources = (await a.client.listResources()).resources.map((r) => r.uri);
  const sessionUri = `collab://session/${sessionId}`;
  check(resources.includes(sessionUri) && resources.includes(`${sessionUri}/participants`), 'resources/list', resources);
  const templates = (await a.client.listResourceTemplates()).resourceTemplates.map((t) => t.uriTemplate);
  check(templates.includes('collab://session/{sessionId}'), 'resource templates', templates);
  const read = await a.client.readResource({ uri: `${sessionUri}/participants` });
  const doc = JSON.parse(read.contents[0].text);
  check(doc.driver === 'claude' && read.contents[0].mimeType === 'application/json', 'resources/read', doc);
  await a.client.subscribeResource({ uri: sessionUri });
  let missing;
  try { await a.client.readResource({ uri: 'collab://session/00000000-0000-0000-0000-000000000000' }); } catch (e) { missing = e; }
  check(missing?.code === -32002, 'unknown resource is -32002', missing?.code);
  const prompt = await a.client.getPrompt({ name: 'resume' });
  const brief = prompt.messages[0].content.text;
  check(brief.includes('You are claude (driver)') && brief.includes('Nothing happened'), 'resume prompt', brief);

  // The shared-context tools, each once.
  const call = async (name, args) => {
    const r = await a.client.callTool({ name, arguments: args });
    check(!r.isError, name, r.isError ? r.content[0].text : r.structuredContent);
    return r.structuredContent;
  };
  const put = await call('context_set', { path: 'activeWork.currentRefactoring.status', value: 'in_progress' });
  const got = await call('context_get', { path: 'activeWork.currentRefactoring.status' });
  check(got.value === 'in_progress' && got.version === put.eventId, 'context_get sees the write and its version', got);
  const race = await a.client.callTool({ name: 'context_set', arguments: { path: 'activeWork.currentRefactoring.status', value: 'x', expectedVersion: put.eventId - 1 } });
  check(race.isError && /version_conflict/.test(race.content[0].text), 'stale expectedVersion is refused', race.content[0].text);
  await call('context_append', { path: 'activeWork.recentDiscoveries', value: { finding: 'n+1' } });
  await call('context_sync', { updates: { projectUnderstanding: { architecture: 'Microservices' } } });
  await call('context_delete', { path: 'projectUnderstanding' });
  const changes = await call('context_diff', { since: put.eventId - 1 });
  // activeWork did not exist before: the whole new branch is one added entry.
  check(changes.added.activeWork?.new?.currentRefactoring?.status === 'in_progress', 'context_diff', changes);
  await call('memory', { action: 'push', kind: 'symbol', value: 'UserService' });
  const mem = await call('memory', { action: 'recent', kind: 'symbol' });
  check(mem.recentSymbols[0] === 'UserService', 'memory recent', mem);
  await call('notes', { observations: ['prefers small PRs'] });
  const mine = await call('notes', {});
  check(mine.value.observations[0] === 'prefers small PRs', 'notes read back', mine);
  await call('discovery_report', { finding: 'race in cache', location: '/src/cache.ts:9', severity: 'low' });
  const sent = await call('message_send', { to: 'gemini', body: 'please review auth.ts', requiresAck: true });
  const mine2 = await call('messages_read', { limit: 5 });
  check(mine2.messages.some((m) => m.id === sent.id && m.to === 'gemini'), 'messages_read shows the sent message', mine2);
  await call('message_ack', { upTo: 0 });
  const cp = await call('checkpoint', { action: 'begin', task: 'refactor auth', estimatedDuration: '30s', interruptible: true });
  check(cp.holding === false, 'interruptible checkpoint holds nothing', cp);
  await call('checkpoint', { action: 'end' });
  await call('status_report', { kind: 'lint', status: 'pass', summary: 'clean' });
  const rec = await call('changes', { action: 'record', filePath: '/src/auth.ts', before: 'a\n', after: 'b\n' });
  check(rec.lines.length === 1, 'changes record', rec);
  const ledger = await call('changes', { action: 'list', filePath: '/src/auth.ts' });
  check(ledger.changes.some((c) => c.id === rec.id), 'changes list', ledger);
  const hs = await call('handshake', { step: 'work_complete', changes: ['auth'], needsReview: false });
  check(hs.handshake.state === 'idle', 'handshake without review keeps control', hs);
  const held = await call('lock', { action: 'acquire', resource: '/src/auth/', operation: 'refactor', duration: 'estimated_30s' });
  check(held.state === 'held' && held.token === held.id, 'lock acquire', held);
  await call('lock', { action: 'release', lockId: held.id });
  const made = await call('task', { action: 'create', description: 'Refactor auth', subtasks: ['tests'], strategy: 'loadBalanced' });
  check(made.tasks.length === 2 && made.tasks[1].parent === made.tasks[0].id, 'task create', made);
  const pending = await call('suggestion', { action: 'list' });
  check(Array.isArray(pending.suggestions), 'suggestion list', pending);
  const asked = await call('role', { action: 'request', role: 'navigator', reason: 'let gemini drive' });
  check(asked.status === 'requested', 'role request', asked);
  await call('events_ack', { upTo: structured(await a.client.callTool({ name: 'whoami', arguments: {} })).lastEventId });
  const emptyPrompt = await a.client.getPrompt({ name: 'resume' });
  check(emptyPrompt.messages[0].content.text.includes('Nothing happened'), 'acked: nothing new in the briefing');

  // 2. A change is pushed on the GET stream with its log id.
  const paused = structured(await a.client.callTool({ name: 'session_status', arguments: { action: 'pause' } }));
  check(paused.status === 'paused', 'session_status pause', paused.status);
  check(await waitFor(() => a.events.some((e) => e.kind === 'session_status_changed')), 'pushed event arrives', a.events);
  const seen = a.events.at(-1).id;
  check(seen === paused.lastEventId, 'SSE event carries the log id', { seen, last: paused.lastEventId });
  check(await waitFor(() => a.updated.includes(sessionUri)), 'resources/updated for the subscribed session', a.updated);
  check(!a.updated.includes(`${sessionUri}/participants`), 'no update for what was not subscribed', a.updated);

  // Long poll: waits for the next event, reports progress, logs at the level asked for.
  await a.client.setLoggingLevel('debug');
  const newest = structured(await a.client.callTool({ name: 'whoami', arguments: {} })).lastEventId;
  const progress = [];
  const longPoll = a.client.callTool({ name: 'events_poll', arguments: { after: newest, waitSecs: 10 } }, undefined,
    { onprogress: (p) => progress.push(p), timeout: 30_000 });
  await sleep(2300);
  const change = await fetch(new URL(`/mcp/session/${sessionId}/status`, base), {
    method: 'POST', headers: { 'content-type': 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify({ action: 'resume' }),
  });
  check(change.status === 200, 'REST change during the long poll', change.status);
  const polled = structured(await longPoll);
  check(polled.events.length === 1 && polled.events[0].id === newest + 1, 'long poll returns the new event', polled.events);
  check(progress.length >= 2 && progress.every((p, i) => i === 0 || p.progress >= progress[i - 1].progress), 'progress while waiting', progress);
  check(a.logs.some((l) => l.level === 'debug' && /waiting/.test(String(l.data))), 'debug log message', a.logs);
  // Cancellation: the SDK sends notifications/cancelled; the hub stops the call.
  const abort = new AbortController();
  const doomed = a.client.callTool({ name: 'events_poll', arguments: { after: newest + 1, waitSecs: 30 } }, undefined, { signal: abort.signal });
  await sleep(300);
  abort.abort('changed my mind');
  let aborted;
  try { await doomed; } catch (e) { aborted = e; }
  check(aborted !== undefined, 'cancelled call ends', String(aborted));
  const after = structured(await a.client.callTool({ name: 'whoami', arguments: {} }));
  check(after.aiId === 'claude', 'session fine after a cancel', after);
  await a.client.setLoggingLevel('emergency');

  // 3. A second AI, not configured with a token, joins through a tool and is then bound to it.
  const b = await connect('cursor-ts');
  const unboundNames = (await b.client.listTools()).tools.map((t) => t.name).sort();
  check(JSON.stringify(unboundNames) === JSON.stringify(['evolution', 'session_create', 'session_join', 'session_list']), 'unbound client sees evolution/create/join/list', unboundNames);
  const listed = structured(await b.client.callTool({ name: 'session_list', arguments: {} }));
  check(listed.sessions.some((s) => s.sessionId === sessionId), 'session_list', listed.sessions.length);
  const joined = await b.client.callTool({ name: 'session_join', arguments: { sessionId, participant: 'cursor', role: 'observer' } });
  check(!joined.isError && !JSON.stringify(joined).includes('chp_'), 'session_join without a token in the result', joined.content[0].text.slice(0, 200));
  check(await waitFor(() => b.listChanged() > 0), 'tools/list_changed after binding');
  const observerNames = (await b.client.listTools()).tools.map((t) => t.name).sort();
  check(!observerNames.includes('session_status') && !observerNames.includes('context_set') && observerNames.includes('context_get'),
    'observer sees reads, not writes', observerNames);
  const cursor = structured(await b.client.callTool({ name: 'whoami', arguments: {} }));
  check(cursor.aiId === 'cursor' && cursor.role === 'observer', 'bound as cursor', cursor);
  check(await waitFor(() => a.events.some((e) => e.kind === 'participant_joined')), 'claude hears cursor join');

  // 4. A third client creates a session of its own through the tool.
  const c = await connect('codex-ts');
  const created = structured(await c.client.callTool({ name: 'session_create', arguments: { name: 'side quest', participants: [{ aiId: 'codex' }, { aiId: 'claude' }] } }));
  check(created.driver === 'codex' && created.participants.length === 2, 'session_create', created);
  const codex = structured(await c.client.callTool({ name: 'whoami', arguments: {} }));
  check(codex.aiId === 'codex' && codex.sessionId === created.sessionId, 'creator is bound as me', codex);
  const leftView = structured(await c.client.callTool({ name: 'session_leave', arguments: {} }));
  check(leftView.participants.find((p) => p.aiId === 'codex')?.leftAt, 'session_leave', leftView.participants);
  await c.transport.terminateSession();
  await c.client.close();

  // 5. Claude's stream drops; events happen meanwhile; it resumes with Last-Event-ID.
  const lastSeen = Math.max(...a.events.map((e) => e.id));
  const mcpSession = a.transport.sessionId;
  await a.client.close();
  const before = a.events.length;
  const rest = await fetch(new URL(`/mcp/session/${sessionId}/status`, base), {
    method: 'POST', headers: { 'content-type': 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify({ action: 'pause' }),
  });
  check(rest.status === 200, 'REST change while disconnected', rest.status);
  const missed = (await rest.json()).lastEventId;
  const again = await connect('claude-ts-again', { auth: token, sessionIdToReuse: mcpSession });
  again.transport.setProtocolVersion('2025-11-25');
  await again.transport.resumeStream(String(lastSeen));
  check(await waitFor(() => again.events.some((e) => e.id === missed)), 'missed event replayed after Last-Event-ID', again.events);
  await sleep(300);
  const ids = again.events.map((e) => e.id);
  check(ids.every((id) => id > lastSeen) && new Set(ids).size === ids.length, 'nothing replayed twice or from before the cursor', { lastSeen, ids });
  check(a.events.length === before, 'the closed client got nothing more');
  const tool = await again.client.callTool({ name: 'whoami', arguments: {} });
  check(!tool.isError, 're-attached session still works');
  await again.transport.terminateSession();
  await again.client.close();
  await b.transport.terminateSession();
  await b.client.close();
} catch (e) {
  out('fail', { check: 'exception', detail: String(e?.stack ?? e) });
  failed = true;
}
out('done', { failed });
process.exit(failed ? 1 : 0);
