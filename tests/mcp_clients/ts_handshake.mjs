#!/usr/bin/env node
// The driver/navigator handshake (concept step 4) with two official TypeScript SDK clients in a
// strict-mode session: claude drives, gemini navigates. Refused writes become suggestions; the
// four steps work_complete → review_start → review_complete → control_received, with what each
// stream sees; refusals; and a role swap at the boundary with tools/list_changed.
// Usage: node ts_handshake.mjs <hub base URL> <collab session id> <claude token> <gemini token>
// Prints one JSON line per check ({"ev": "ok"|"fail", "check", "detail"}), then {"ev":"done"};
// exits 0 only if every check held.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { EventNotification, check, fail, finish, out, sleep, tapSse, waitFor } from './checks.mjs';

const [base, sessionId, claudeToken, geminiToken] = process.argv.slice(2);
const tokens = { claude: claudeToken, gemini: geminiToken };
const mcpUrl = new URL('/mcp', base);
// A client acting as `who` (its bearer token), with its GET stream open and tapped.
async function connect(who) {
  const events = []; // notifications/collab/event params, from the SDK's notification handler
  const tools = { changed: 0, latest: null, errors: [] }; // from the SDK's listChanged option
  const onGet = { events: [], listChanged: 0 }; // from the SSE tap of the GET stream
  let getOpened = 0;
  const tappingFetch = async (url, init) => {
    const res = await fetch(url, init);
    if ((init?.method ?? 'GET').toUpperCase() !== 'GET' || !res.ok || !res.body) return res;
    getOpened += 1;
    const [mine, theirs] = res.body.tee();
    tapSse(mine, ({ message: msg }) => {
      if (msg?.method === 'notifications/collab/event') onGet.events.push(msg.params);
      if (msg?.method === 'notifications/tools/list_changed') onGet.listChanged += 1;
    });
    return new Response(theirs, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
  const transport = new StreamableHTTPClientTransport(mcpUrl, {
    requestInit: { headers: { Authorization: `Bearer ${tokens[who]}` } },
    fetch: tappingFetch,
    reconnectionOptions: { initialReconnectionDelay: 100, maxReconnectionDelay: 500, reconnectionDelayGrowFactor: 1.5, maxRetries: 0 },
  });
  const client = new Client({ name: `${who}-ts-handshake`, version: '0.0.1' }, {
    capabilities: {},
    // The SDK's own tools/list_changed handling: one refresh per notification (no debounce).
    listChanged: {
      tools: {
        autoRefresh: true,
        debounceMs: 0,
        onChanged: (error, items) => {
          tools.changed += 1;
          if (error) tools.errors.push(String(error));
          else tools.latest = items;
        },
      },
    },
  });
  client.setNotificationHandler(EventNotification, (n) => events.push(n.params));
  await client.connect(transport);
  const c = { who, client, transport, events, tools, onGet, getOpened: () => getOpened };
  c.find = (pred) => events.find(pred);
  c.raw = (name, args) => client.callTool({ name, arguments: args });
  c.call = async (name, args, what = `${who}: ${name} succeeds`) => {
    const r = await c.raw(name, args);
    check(!r.isError, what, r.isError ? texts(r) : undefined);
    return r.structuredContent ?? {};
  };
  c.refused = async (name, args, needle, what) => {
    const r = await c.raw(name, args);
    const t = texts(r);
    check(r.isError === true && t.includes(needle), what, { isError: r.isError ?? false, text: t });
    return r;
  };
  return c;
}

const texts = (r) => (r.content ?? []).map((x) => x.text ?? '').join('\n');
const summary = (events) => events.map((e) => ({ id: e.id, kind: e.kind, priority: e.priority, to: e.to, step: e.payload?.step }));

// A 60-line file with one line replaced: changes on different lines do not overlap.
const lines = Array.from({ length: 60 }, (_, i) => `line ${i + 1}\n`).join('');
const edit = (file, line, text) => ({ filePath: file, before: lines, after: lines.replace(`line ${line}\n`, `${text}\n`) });
const FILE = '/src/auth.ts';

try {
  const claude = await connect('claude');
  const gemini = await connect('gemini');
  for (const c of [claude, gemini]) {
    check(c.client.getServerCapabilities()?.tools?.listChanged === true, `${c.who}: the hub advertises tools.listChanged`,
      c.client.getServerCapabilities());
    const me = await c.call('whoami', {});
    check(me.aiId === c.who && me.sessionId === sessionId, `${c.who}: whoami`, me);
    check(await waitFor(() => c.getOpened() > 0), `${c.who}: GET stream open`);
  }
  const meC = await claude.call('whoami', {});
  const meG = await gemini.call('whoami', {});
  check(meC.role === 'driver' && meG.role === 'navigator' && meC.driver === 'claude', 'claude drives, gemini navigates',
    { claude: meC.role, gemini: meG.role, driver: meC.driver });

  // 1. The driver records a change.
  const first = await claude.call('changes', { action: 'record', ...edit(FILE, 5, 'fn login()') }, 'claude records a change');
  check(Number.isInteger(first.id), 'the change has an id', first);

  // 2. The navigator may not; it suggests instead, and the driver hears of it.
  await gemini.refused('changes', { action: 'record', ...edit(FILE, 5, 'fn login()') }, 'write_permission_denied',
    'gemini recording the same change is refused with write_permission_denied');
  const sugg = await gemini.call('suggestion', { action: 'submit', ...edit(FILE, 45, 'if (!user) return null;'), reason: 'null check on line 45' },
    'gemini submits a suggestion');
  check(Number.isInteger(sugg.id), 'the suggestion has an id', sugg);
  check(await waitFor(() => claude.find((e) => e.kind === 'suggestion_submitted' && e.id === sugg.id)),
    'claude\'s stream receives suggestion_submitted', summary(claude.events));
  const submitted = claude.find((e) => e.id === sugg.id);
  check(submitted?.actor === 'gemini' && submitted?.priority === 'important', 'suggestion_submitted is by gemini, important', submitted);

  // 3. The concept's four steps.
  // Step 1: work_complete; the driver's writes freeze while the review is open.
  const done = await claude.call('handshake', {
    step: 'work_complete', changes: ['refactored auth module', 'updated tests'], needsReview: true,
    message: 'Auth refactoring complete, please review for type safety',
  }, 'claude: work_complete');
  check(done.handshake?.state === 'awaiting_review', 'handshake.state is awaiting_review', done);
  check(await waitFor(() => gemini.find((e) => e.kind === 'handshake' && e.payload?.step === 'work_complete')),
    'gemini\'s stream receives the work_complete handshake event', summary(gemini.events));
  const wc = gemini.find((e) => e.kind === 'handshake' && e.payload?.step === 'work_complete');
  check(wc?.id === done.eventId && wc?.actor === 'claude' && wc?.payload?.needsReview === true
    && JSON.stringify(wc?.payload?.changes) === JSON.stringify(['refactored auth module', 'updated tests'])
    && wc?.payload?.message === 'Auth refactoring complete, please review for type safety',
  'the streamed work_complete carries the handshake id, changes and message', { streamed: wc, result: done });
  await claude.refused('changes', { action: 'record', ...edit(FILE, 6, 'during review') }, 'write_permission_denied',
    'claude\'s write during the review is refused with write_permission_denied');

  // Step 2: the navigator starts the review, acknowledging the event it streamed.
  const started = await gemini.call('handshake', { step: 'review_start', acknowledgeId: wc?.id }, 'gemini: review_start');
  check(started.handshake?.state === 'reviewing', 'handshake.state is reviewing', started);

  // Step 3: review complete, control passed back: critical for claude alone.
  const reviewed = await gemini.call('handshake', {
    step: 'review_complete', feedback: { approved: true, suggestions: ['Add null check on line 45'], issues: [] }, passControl: true,
  }, 'gemini: review_complete with passControl');
  check(reviewed.handshake?.state === 'control_passed', 'handshake.state is control_passed', reviewed);
  check(await waitFor(() => claude.find((e) => e.kind === 'control_passed')), 'claude\'s stream receives control_passed', summary(claude.events));
  const cp = claude.find((e) => e.kind === 'control_passed');
  check(cp?.priority === 'critical' && cp?.to === 'claude' && cp?.actor == null && cp?.payload?.by === 'gemini' && cp?.payload?.handshakeId === wc?.id,
    'control_passed is critical, to claude, by gemini, for this handshake', cp);
  check(await waitFor(() => gemini.find((e) => e.kind === 'handshake' && e.payload?.step === 'review_complete')),
    'gemini\'s stream has its own review_complete', summary(gemini.events));
  await sleep(300);
  check(!gemini.find((e) => e.kind === 'control_passed'), 'gemini\'s stream does not get control_passed', summary(gemini.events));
  const gNext = await gemini.raw('whoami', {});
  // The digest of what waits for gemini follows the answer (counts only: nothing critical).
  check(!gNext.isError && gNext.content?.[0]?.text?.startsWith('{') && !texts(gNext).includes('critical not acknowledged')
    && /^Waiting after #\d+: .*events_ack/s.test(gNext.content?.at(-1)?.text ?? ''),
    'gemini\'s next tool result carries no critical block (control_passed is not critical for it), only the counts after the answer', gNext.content);
  const rc = claude.find((e) => e.kind === 'handshake' && e.payload?.step === 'review_complete');
  check(rc?.payload?.feedback?.approved === true && rc?.payload?.feedback?.suggestions?.[0] === 'Add null check on line 45'
    && rc?.payload?.passControl === true, 'claude\'s stream has the review feedback', rc);

  // Claude's next tool result leads with the unacknowledged critical event.
  const next = await claude.raw('whoami', {});
  const firstText = next.content?.[0]?.text ?? '';
  check(!next.isError && firstText.includes('control_passed') && firstText.includes(`#${cp?.id}`),
    'claude\'s next tool result leads with the critical block naming control_passed', next.content);
  check(next.structuredContent?.handshake?.state === 'control_passed', 'whoami still answers below the block', next.structuredContent);

  // Step 4: control received; writes work again.
  const back = await claude.call('handshake', { step: 'control_received', nextAction: 'implementing suggestions' }, 'claude: control_received');
  check(back.handshake?.state === 'idle', 'handshake.state is idle', back);
  check(await waitFor(() => gemini.find((e) => e.kind === 'handshake' && e.payload?.step === 'control_received')),
    'gemini\'s stream receives control_received', summary(gemini.events));
  check(!gemini.find((e) => e.id === cp?.id), 'gemini\'s stream went past control_passed without it (in-order stream)', summary(gemini.events));
  const again = await claude.call('changes', { action: 'record', ...edit(FILE, 10, 'validate(token)') }, 'claude\'s write works again');
  check(Number.isInteger(again.id) && again.id > first.id, 'the new change has a later id', again);
  const accepted = await claude.call('suggestion', { action: 'resolve', id: sugg.id, accept: true, note: 'good catch' },
    'claude accepts gemini\'s suggestion');
  check(Number.isInteger(accepted.changeId), 'accepting gives a changeId', accepted);
  check(await waitFor(() => gemini.find((e) => e.kind === 'suggestion_resolved' && e.to === 'gemini')),
    'gemini\'s stream is told its suggestion was resolved', summary(gemini.events));
  const ledger = await claude.call('changes', { action: 'list', filePath: FILE });
  const acceptedChange = ledger.changes?.find((c) => c.id === accepted.changeId);
  check(acceptedChange?.aiId === 'gemini' && acceptedChange?.coAuthor === 'claude', 'the accepted change is gemini\'s, co-authored by claude', ledger);
  const steps = claude.events.filter((e) => e.kind === 'handshake').map((e) => e.payload?.step);
  check(JSON.stringify(steps) === JSON.stringify(['work_complete', 'review_start', 'review_complete', 'control_received']),
    'claude streamed the four steps in order', steps);

  // 4. Refusals.
  await gemini.refused('handshake', { step: 'work_complete' }, 'not the driver', 'gemini\'s work_complete is refused: not the driver');
  const idle = await claude.raw('handshake', { step: 'control_received' });
  check(idle.isError === true && texts(idle).includes('idle'), 'claude\'s control_received when idle is refused', texts(idle));

  // 5. Role swap at a boundary: both get tools/list_changed on their streams.
  const before = { claude: { ...claude.tools, get: claude.onGet.listChanged }, gemini: { ...gemini.tools, get: gemini.onGet.listChanged } };
  const swap = await claude.call('role', { action: 'assign', roles: { gemini: 'driver' }, reason: 'role swap' }, 'claude assigns gemini the driver role');
  check(swap.status === 'changed', 'the swap applies at once (idle: a boundary)', swap);
  for (const c of [claude, gemini]) {
    const was = before[c.who];
    check(await waitFor(() => c.onGet.listChanged > was.get), `${c.who}: tools/list_changed on its GET stream`,
      { before: was.get, after: c.onGet.listChanged });
    check(await waitFor(() => c.tools.changed > was.changed && c.tools.latest !== was.latest), `${c.who}: the SDK's listChanged handler fired and refreshed`,
      { before: was.changed, after: c.tools.changed, errors: c.tools.errors });
  }
  const roleEvent = gemini.find((e) => e.kind === 'role_changed');
  check(roleEvent !== undefined, 'gemini streamed role_changed', summary(gemini.events));
  const gMe = await gemini.call('whoami', {});
  check(gMe.role === 'driver' && gMe.driver === 'gemini', 'gemini\'s whoami: role driver', gMe);
  const cMe = await claude.call('whoami', {});
  check(cMe.role === 'navigator', 'claude\'s whoami: role navigator', cMe);
  const refreshed = (gemini.tools.latest ?? []).map((t) => t.name);
  check(refreshed.includes('handshake'), 'the SDK-refreshed tool list has handshake', refreshed);
  const listed = (await gemini.client.listTools()).tools.map((t) => t.name);
  check(listed.includes('handshake') && listed.includes('changes'), 'gemini\'s tools/list has handshake', listed);
  const gDone = await gemini.call('handshake', { step: 'work_complete', changes: ['docs'], needsReview: true }, 'gemini: work_complete as driver');
  check(gDone.handshake?.state === 'awaiting_review', 'gemini\'s work awaits review', gDone);
  check(await waitFor(() => claude.find((e) => e.id === gDone.eventId && e.payload?.step === 'work_complete')),
    'claude\'s stream receives gemini\'s work_complete', summary(claude.events.slice(-5)));
  await claude.refused('changes', { action: 'record', ...edit(FILE, 20, 'navigator now') }, 'write_permission_denied',
    'claude, now a navigator, may not write');

  out('info', { check: 'claude stream', detail: summary(claude.events) });
  out('info', { check: 'gemini stream', detail: summary(gemini.events) });
  for (const c of [claude, gemini]) {
    await c.transport.terminateSession();
    await c.client.close();
  }
} catch (e) {
  fail('exception', String(e?.stack ?? e));
}
finish();
