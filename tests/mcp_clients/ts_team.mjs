#!/usr/bin/env node
// Three official TypeScript SDK clients (claude, gemini, cursor) in one collab session: directed
// messages and broadcasts, threads, a non-interruptible checkpoint, offline catch-up, and a
// compare-and-set race.
// Usage: node ts_team.mjs <hub base URL>[,<URL>,<URL>] <collab session id> <claude token> <gemini token> <cursor token>
// With several URLs (hubs sharing one database) claude, gemini and cursor each use their own.
// Prints one JSON line per check ({"ev": "ok"|"fail", "check", "detail"}), then {"ev":"done"};
// exits 0 only if every check held.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { EventNotification, check, fail, finish, out, sleep, tapSse, waitFor } from './checks.mjs';

const [base, sessionId, ...tokenList] = process.argv.slice(2);
const tokens = { claude: tokenList[0], gemini: tokenList[1], cursor: tokenList[2] };
const bases = base.split(',');
const mcpUrl = (who) => new URL('/mcp', bases[['claude', 'gemini', 'cursor'].indexOf(who) % bases.length] ?? bases[0]);
// A client acting as `who` (its bearer token), with its GET stream open and tapped.
async function connect(who, label = who) {
  const frames = []; // from the SSE tap: {sseId, ev}
  const events = []; // what the SDK handed to the notification handler
  let getOpened = 0;
  const tappingFetch = async (url, init) => {
    const res = await fetch(url, init);
    if ((init?.method ?? 'GET').toUpperCase() !== 'GET' || !res.ok || !res.body) return res;
    getOpened += 1;
    const [mine, theirs] = res.body.tee();
    tapSse(mine, ({ sseId, message }) => {
      if (message?.method === 'notifications/collab/event') frames.push({ sseId, ev: message.params, at: Date.now() });
    });
    return new Response(theirs, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
  const transport = new StreamableHTTPClientTransport(mcpUrl(who), {
    requestInit: { headers: { Authorization: `Bearer ${tokens[who]}` } },
    fetch: tappingFetch,
    reconnectionOptions: { initialReconnectionDelay: 100, maxReconnectionDelay: 500, reconnectionDelayGrowFactor: 1.5, maxRetries: 0 },
  });
  const client = new Client({ name: `${label}-ts-team`, version: '0.0.1' }, { capabilities: {} });
  client.setNotificationHandler(EventNotification, (n) => events.push(n.params));
  await client.connect(transport);
  const c = { who, client, transport, frames, events, getOpened: () => getOpened };
  c.ids = () => frames.map((f) => f.ev.id);
  c.has = (id) => frames.some((f) => f.ev.id === id);
  c.raw = (name, args) => client.callTool({ name, arguments: args });
  c.call = async (name, args) => {
    const r = await c.raw(name, args);
    check(!r.isError, `${label}: ${name} succeeds`, r.isError ? texts(r) : undefined);
    return r.structuredContent;
  };
  c.poll = (args) => c.call('events_poll', { limit: 200, ...args });
  return c;
}

const texts = (r) => (r.content ?? []).map((x) => x.text ?? '').join('\n');
const summary = (frames) => frames.map((f) => ({ id: f.ev.id, kind: f.ev.kind, priority: f.ev.priority, to: f.ev.to, sse: f.sseId }));

// Every stream: SSE ids equal the event id and rise strictly; events without an SSE id are
// critical; an id appears at most twice, and twice only for a critical event (early, then in order).
function checkStreamShape(c, label) {
  const inOrder = c.frames.filter((f) => f.sseId !== null);
  check(inOrder.every((f) => f.sseId === f.ev.id), `${label}: SSE id is the event id`, summary(inOrder.filter((f) => f.sseId !== f.ev.id)));
  const rising = inOrder.every((f, i) => i === 0 || f.sseId > inOrder[i - 1].sseId);
  check(rising, `${label}: in-order events rise strictly (no duplicate, no reordering)`, inOrder.map((f) => f.sseId));
  const early = c.frames.filter((f) => f.sseId === null);
  check(early.every((f) => f.ev.priority === 'critical'), `${label}: only critical events come without an SSE id`, summary(early));
  const count = new Map();
  for (const f of c.frames) count.set(f.ev.id, (count.get(f.ev.id) ?? 0) + 1);
  const dup = [...count].filter(([id, n]) => n > 2 || (n === 2 && !(early.some((f) => f.ev.id === id) && inOrder.some((f) => f.ev.id === id))));
  check(dup.length === 0, `${label}: no event delivered twice (beyond early + in order)`, dup);
  check(c.events.length === c.frames.length, `${label}: the SDK handed over every streamed event`, { sdk: c.events.length, sse: c.frames.length });
}

// The stream's distinct event ids up to the newest polled one equal what events_poll shows
// after the cursor the stream started from.
async function checkStreamMatchesLog(c, label) {
  const page = await c.poll({ after: c.start });
  check(page.more === false, `${label}: events_poll fits one page`, page.more);
  const logIds = page.events.map((e) => e.id);
  const top = logIds.at(-1) ?? 0;
  await waitFor(() => c.frames.some((f) => f.ev.id >= top));
  const seen = [...new Set(c.ids())].filter((id) => id <= top).sort((x, y) => x - y);
  check(JSON.stringify(seen) === JSON.stringify(logIds), `${label}: stream holds exactly the events it may see, none missing`,
    { stream: seen, log: logIds });
  return page;
}

try {
  const claude = await connect('claude');
  const gemini = await connect('gemini');
  const cursor = await connect('cursor');
  for (const c of [claude, gemini, cursor]) {
    const me = await c.call('whoami', {});
    check(me.aiId === c.who && me.sessionId === sessionId, `${c.who}: whoami`, me);
    // A new participant has acknowledged the creation (event 1); a stream without
    // Last-Event-ID starts after the acknowledged cursor.
    c.start = me.ackedEventId;
    check(me.ackedEventId === 1, `${c.who}: a new participant's cursor is at the creation event`, me.ackedEventId);
    check(await waitFor(() => c.getOpened() > 0), `${c.who}: GET stream open`);
  }

  // 1. A directed message and a broadcast.
  const direct = await claude.call('message_send', { to: 'gemini', priority: 'important', body: 'gemini: please review auth.ts' });
  const bcast = await claude.call('message_send', { body: 'everyone: rebasing main in 5 minutes' });
  check(direct.thread === direct.id && bcast.thread === bcast.id && bcast.id > direct.id, 'message_send gives id and thread', { direct, bcast });
  check(await waitFor(() => gemini.has(direct.id) && gemini.has(bcast.id)), 'gemini streams the directed message and the broadcast', summary(gemini.frames));
  const dm = gemini.frames.find((f) => f.ev.id === direct.id)?.ev;
  check(dm?.kind === 'message_sent' && dm?.to === 'gemini' && dm?.actor === 'claude' && dm?.priority === 'important',
    'the directed event has kind, to, actor, priority', dm);
  check(await waitFor(() => cursor.has(bcast.id)), 'cursor streams the broadcast', summary(cursor.frames));
  await sleep(300);
  check(!cursor.has(direct.id), 'cursor never streams the message directed to gemini', summary(cursor.frames));
  check(await waitFor(() => claude.has(direct.id) && claude.has(bcast.id)), 'the sender streams both', summary(claude.frames));
  const cursorPoll = await cursor.poll({ after: 0 });
  check(cursorPoll.events.some((e) => e.id === bcast.id) && !cursorPoll.events.some((e) => e.id === direct.id),
    'cursor events_poll: the broadcast, not the directed message', cursorPoll.events.map((e) => e.id));

  const gRead1 = await gemini.call('messages_read', {});
  check(gRead1.unread === 2, 'gemini: 2 unread before reading', gRead1.unread);
  const gd = gRead1.messages.find((m) => m.id === direct.id);
  check(gd?.from === 'claude' && gd?.to === 'gemini' && gd?.read === false && gRead1.messages.some((m) => m.id === bcast.id),
    'gemini messages_read has both, unread', gRead1.messages);
  const gRead2 = await gemini.call('messages_read', {});
  check(gRead2.unread === 0 && gRead2.messages.find((m) => m.id === direct.id)?.read === true, 'gemini: 0 unread after reading', gRead2);
  const cRead1 = await cursor.call('messages_read', {});
  check(cRead1.unread === 1, 'cursor: 1 unread before reading', cRead1.unread);
  check(cRead1.messages.some((m) => m.id === bcast.id) && !cRead1.messages.some((m) => m.id === direct.id),
    'cursor messages_read: the broadcast, not the directed message', cRead1.messages.map((m) => m.id));
  const cRead2 = await cursor.call('messages_read', {});
  check(cRead2.unread === 0, 'cursor: 0 unread after reading', cRead2.unread);
  const aRead = await claude.call('messages_read', {});
  const ad = aRead.messages.find((m) => m.id === direct.id);
  const ab = aRead.messages.find((m) => m.id === bcast.id);
  check(ad?.readBy?.includes('gemini') && !ad?.readBy?.includes('cursor'), 'claude sees readBy [gemini] on the directed message', ad);
  check(ab?.readBy?.includes('gemini') && ab?.readBy?.includes('cursor'), 'claude sees readBy gemini and cursor on the broadcast', ab);
  check(aRead.unread === 0, 'claude has nothing unread (its own messages do not count)', aRead.unread);

  // 2. Threads: gemini answers; cursor cannot answer what it cannot see.
  const reply = await gemini.call('message_send', { to: 'claude', body: 'looks fine, one nit', replyTo: direct.id });
  check(reply.thread === direct.thread && reply.id > bcast.id, 'the reply joins the thread', { reply, direct });
  const thread = await claude.call('messages_read', { thread: direct.thread });
  check(JSON.stringify(thread.messages.map((m) => m.id)) === JSON.stringify([direct.id, reply.id]), 'claude reads the thread', thread.messages);
  const sneaky = await cursor.raw('message_send', { body: 'me too', replyTo: direct.id });
  check(sneaky.isError === true && /replyTo/.test(texts(sneaky)), 'cursor cannot reply to a message it cannot see', texts(sneaky));
  const cThread = await cursor.call('messages_read', { thread: direct.thread });
  check(cThread.messages.length === 0, 'cursor reads nothing of that thread', cThread.messages);
  const fine = await cursor.call('message_send', { body: 'ack, will rebase after', replyTo: bcast.id });
  check(fine.thread === bcast.id, 'cursor can reply to the broadcast', fine);
  check(await waitFor(() => claude.has(reply.id) && claude.has(fine.id)), 'claude streams both replies');
  check(await waitFor(() => cursor.has(fine.id)), 'cursor streams its own reply');
  check(!cursor.has(reply.id), 'cursor does not stream the reply directed to claude');

  // 3. Cursor focuses (non-interruptible): only critical events come through.
  const cp = await cursor.call('checkpoint', { action: 'begin', task: 'migrating the schema', estimatedDuration: '30s', interruptible: false });
  check(cp.holding === true, 'non-interruptible checkpoint holds', cp);
  const framesAtBegin = cursor.frames.length;
  const routine = await claude.call('message_send', { priority: 'routine', body: 'lunch at noon?' });
  const critical = await claude.call('message_send', { priority: 'critical', body: 'STOP: prod is down' });
  check(await waitFor(() => cursor.has(critical.id)), 'cursor streams the critical broadcast during its checkpoint', summary(cursor.frames.slice(framesAtBegin)));
  const criticalFrame = cursor.frames.find((f) => f.ev.id === critical.id);
  check(criticalFrame?.sseId === null, 'the critical event comes early, without an SSE id', criticalFrame && summary([criticalFrame]));
  await sleep(1000);
  check(!cursor.has(routine.id), 'the routine broadcast is held (1 s after the critical one arrived)', summary(cursor.frames.slice(framesAtBegin)));
  const duringHold = cursor.frames.slice(framesAtBegin).filter((f) => f.ev.id > cp.eventId);
  check(duringHold.every((f) => f.ev.priority === 'critical'), 'nothing but critical events reach cursor during the hold', summary(duringHold));
  check(await waitFor(() => gemini.has(routine.id) && gemini.has(critical.id) && claude.has(critical.id)), 'the others stream both at once');
  const heldPoll = await cursor.poll({ after: 0 });
  check(heldPoll.held === true, 'events_poll during the hold says held', heldPoll.held);
  check(heldPoll.events.length > 0 && heldPoll.events.every((e) => e.priority === 'critical') && heldPoll.events.some((e) => e.id === critical.id),
    'events_poll during the hold returns only critical events', heldPoll.events.map((e) => ({ id: e.id, priority: e.priority })));
  const ended = await cursor.call('checkpoint', { action: 'end' });
  check(ended.holding === false, 'checkpoint ends', ended);
  check(await waitFor(() => cursor.has(routine.id) && cursor.has(ended.eventId)), 'after the checkpoint the routine broadcast arrives', summary(cursor.frames.slice(framesAtBegin)));
  const routineFrame = cursor.frames.find((f) => f.ev.id === routine.id);
  check(routineFrame?.sseId === routine.id, 'the held event comes in order, with its SSE id', routineFrame && summary([routineFrame]));
  await sleep(300);
  const freePoll = await cursor.poll({ after: 0 });
  check(freePoll.held === false || freePoll.held === undefined, 'events_poll after the checkpoint is not held', freePoll.held);
  check(freePoll.events.some((e) => e.id === routine.id), 'events_poll after the checkpoint shows the routine one', freePoll.events.map((e) => e.id));
  out('info', { check: 'cursor stream around the checkpoint', detail: summary(cursor.frames.slice(framesAtBegin)) });
  checkStreamShape(cursor, 'cursor');
  await checkStreamMatchesLog(cursor, 'cursor');

  // 4. Gemini goes offline and catches up from its acknowledged cursor.
  const gPage = await checkStreamMatchesLog(gemini, 'gemini before going offline');
  const lastSeen = gPage.events.at(-1).id;
  const ack = await gemini.call('events_ack', { upTo: lastSeen });
  check(ack.ackedEventId === lastSeen, 'gemini acknowledges what it saw', { ack, lastSeen });
  checkStreamShape(gemini, 'gemini (first client)');
  await gemini.client.close();
  const framesWhenClosed = gemini.frames.length;
  const m1 = await claude.call('message_send', { to: 'gemini', body: 'while you were out: auth.ts merged' });
  const m2 = await claude.call('message_send', { body: 'broadcast one' });
  const m3 = await claude.call('message_send', { body: 'broadcast two', priority: 'important' });
  const m4 = await claude.call('message_send', { to: 'cursor', body: 'cursor only' });
  const ctx = await claude.call('context_set', { path: 'team.deploy', value: 'frozen' });
  const missed = [m1.id, m2.id, m3.id, ctx.eventId];
  const gemini2 = await connect('gemini', 'gemini2');
  gemini2.start = lastSeen;
  check(await waitFor(() => gemini2.has(ctx.eventId)), 'gemini (new client, no Last-Event-ID) streams what it missed', summary(gemini2.frames));
  await sleep(300);
  const catchUp = await gemini2.poll({});
  check(catchUp.ackedEventId === lastSeen, 'events_poll default starts at the acknowledged cursor', { acked: catchUp.ackedEventId, lastSeen });
  const pollIds = catchUp.events.map((e) => e.id);
  check(missed.every((id) => pollIds.includes(id)) && !pollIds.includes(m4.id) && pollIds.every((id) => id > lastSeen),
    'events_poll: every missed event gemini may see, nothing else', { pollIds, missed, notForGemini: m4.id });
  const top = pollIds.at(-1);
  await waitFor(() => gemini2.frames.some((f) => f.ev.id >= top));
  const replayed = gemini2.frames.filter((f) => f.ev.id <= top);
  check(JSON.stringify(replayed.map((f) => f.ev.id)) === JSON.stringify(pollIds),
    'the new stream replays exactly the missed events, in order, from the acknowledged cursor', { stream: summary(gemini2.frames), pollIds });
  check(replayed.every((f) => f.sseId === f.ev.id), 'replayed events carry their SSE id', summary(replayed));
  check(gemini.frames.length === framesWhenClosed, 'the closed client received nothing more');
  check(await waitFor(() => cursor.has(m4.id)), 'cursor streams the message directed to it');
  check(!cursor.has(m1.id), 'cursor does not stream the message directed to gemini');

  // 5. Compare-and-set race on one context path.
  await claude.call('context_set', { path: 'team.owner', value: 'nobody' });
  const current = await claude.call('context_get', { path: 'team.owner' });
  const [rg, rc] = await Promise.all([
    gemini2.raw('context_set', { path: 'team.owner', value: 'gemini', expectedVersion: current.version }),
    cursor.raw('context_set', { path: 'team.owner', value: 'cursor', expectedVersion: current.version }),
  ]);
  const outcomes = [['gemini', rg], ['cursor', rc]];
  const losers = outcomes.filter(([, r]) => r.isError);
  const winners = outcomes.filter(([, r]) => !r.isError);
  check(losers.length === 1 && winners.length === 1, 'exactly one of two racing compare-and-set writes wins',
    outcomes.map(([w, r]) => ({ w, isError: r.isError ?? false, text: texts(r).slice(0, 300) })));
  if (losers.length === 1 && winners.length === 1) {
    check(/version_conflict/.test(texts(losers[0][1])), 'the loser gets version_conflict', texts(losers[0][1]));
    const after = await claude.call('context_get', { path: 'team.owner' });
    check(after.value === winners[0][0] && after.version === winners[0][1].structuredContent.eventId, 'the winner\'s value is stored', after);
  }

  // Whole-run properties of every stream.
  await sleep(300);
  checkStreamShape(claude, 'claude');
  checkStreamShape(cursor, 'cursor (end)');
  checkStreamShape(gemini2, 'gemini2');
  await checkStreamMatchesLog(claude, 'claude (end)');
  await checkStreamMatchesLog(cursor, 'cursor (end)');
  const forGemini = new Set([direct.id, m1.id]);
  const forCursor = new Set([m4.id]);
  check(!cursor.ids().some((id) => forGemini.has(id) || id === reply.id), 'cursor never streamed a message between others', cursor.ids());
  check(![...gemini.ids(), ...gemini2.ids()].some((id) => forCursor.has(id)), 'gemini never streamed the message to cursor');

  for (const c of [claude, gemini2, cursor]) {
    await c.transport.terminateSession();
    await c.client.close();
  }
} catch (e) {
  fail('exception', String(e?.stack ?? e));
}
finish();
