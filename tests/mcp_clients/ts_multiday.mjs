#!/usr/bin/env node
// The concept's "Practical Example: Multi-Day Feature Development" with the official TypeScript
// SDK client: claude (driver) and gemini (navigator) build a payment gateway over three days, the
// hub restarting between days on the same database, and cursor joins on day 3.
// Driven by tests/api/mcp_multiday.rs, one process per day:
//   node ts_multiday.mjs --phase day1|day2|day3 <hub base URL> <state JSON>
// The state starts as {"sessionId", "tokens": {"claude", "gemini"}} (from REST session/create);
// each day prints it back with what the next day needs as {"ev":"state","state":{…}}.
// Prints one JSON line per check ({"ev": "ok"|"fail", "check", "detail"}), then {"ev":"done"};
// exits 0 only if every check held.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { check, fail, finish, out } from './checks.mjs';

const argv = process.argv.slice(2);
const flag = argv.indexOf('--phase');
const phase = flag >= 0 ? argv[flag + 1] : undefined;
const [base, stateJson] = argv.filter((_, i) => flag < 0 || (i !== flag && i !== flag + 1));
const state = JSON.parse(stateJson ?? '{}');
const mcpUrl = new URL('/mcp', base);

const SUMMARY = 'Payment gateway using Stripe API';
const SERVICE = 'src/payment_service.ts';
const TESTS = 'tests/payment_service.test.ts';

const texts = (r) => (r.content ?? []).map((x) => x.text ?? '').join('\n');
const has = (list, part) => (list ?? []).some((x) => (typeof x === 'string' ? x : JSON.stringify(x)).includes(part));
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const tokensOf = (v) => Math.ceil(Buffer.byteLength(JSON.stringify(v), 'utf8') / 4);

// A client acting as `who`: with its bearer token, or without one (loopback, unbound).
async function connect(who, token) {
  const transport = new StreamableHTTPClientTransport(mcpUrl, {
    requestInit: { headers: token ? { Authorization: `Bearer ${token}` } : {} },
    reconnectionOptions: { initialReconnectionDelay: 100, maxReconnectionDelay: 500, reconnectionDelayGrowFactor: 1.5, maxRetries: 0 },
  });
  const client = new Client({ name: `${who}-ts-multiday`, version: '0.0.1' }, { capabilities: {} });
  await client.connect(transport);
  check(transport.protocolVersion === '2025-11-25', `${who}: negotiated 2025-11-25`, transport.protocolVersion);
  const c = { who, client, transport };
  c.raw = (name, args) => client.callTool({ name, arguments: args });
  c.call = async (name, args) => {
    const r = await c.raw(name, args);
    const label = args?.action ? `${name} ${args.action}` : name;
    check(!r.isError, `${who}: ${label} succeeds`, r.isError ? texts(r) : undefined);
    return r.structuredContent ?? {};
  };
  c.tools = async () => (await client.listTools()).tools.map((t) => t.name).sort();
  c.close = async () => {
    await transport.terminateSession().catch(() => {});
    await client.close();
  };
  return c;
}

// Creates a task and returns its id.
async function createTask(c, spec) {
  const made = await c.call('task', { action: 'create', ...spec });
  const task = made.tasks?.[0];
  check(task?.description === spec.description, `${c.who}: task "${spec.description}" created`, made);
  return task?.id;
}

async function completeTask(c, id, what) {
  const done = await c.call('task', { action: 'update', taskId: id, status: 'completed' });
  check(JSON.stringify(done).includes('completed'), `${c.who}: "${what}" completed`, done);
}

// Day 1: claude implements the payment service, gemini writes the tests; end of day: paused.
// Claude works first and gemini after it, so claude's day 2 briefing has all of gemini's work
// as news (news is what came after one's own last event).
async function day1() {
  const claude = await connect('claude', state.tokens.claude);
  const gemini = await connect('gemini', state.tokens.gemini);
  const cm = await claude.call('whoami', {});
  check(cm.aiId === 'claude' && cm.role === 'driver' && cm.sessionId === state.sessionId, 'claude is the driver', cm);
  const gm = await gemini.call('whoami', {});
  check(gm.aiId === 'gemini' && gm.role === 'navigator', 'gemini is the navigator', gm);

  const ctx = await claude.call('context_set', { path: 'summary', value: SUMMARY });
  check(Number.isInteger(ctx.eventId), 'claude: the summary is stored with its event', ctx);
  await claude.call('changes', {
    action: 'record', filePath: SERVICE, reason: 'PaymentService on Stripe',
    before: 'export class PaymentService {}\n',
    after: 'export class PaymentService {\n  charge(amount: number) { return stripe.charges.create({ amount }); }\n}\n',
  });
  const backend = await createTask(claude, { description: 'Backend service', assignedTo: 'claude' });
  await completeTask(claude, backend, 'Backend service');

  // Loose handshake mode: the navigator records its own changes.
  await gemini.call('changes', {
    action: 'record', filePath: TESTS, reason: 'unit tests for PaymentService',
    before: '',
    after: "test('charges', () => expect(new PaymentService().charge(100)).toBeDefined());\n",
  });
  const unit = await createTask(gemini, { description: 'Unit tests', assignedTo: 'gemini' });
  await completeTask(gemini, unit, 'Unit tests');
  await gemini.call('discovery_report', { finding: 'API rate limiting: Stripe allows 100 requests per second', severity: 'high', location: SERVICE });
  const msg = await gemini.call('message_send', { to: 'claude', body: 'Unit tests for PaymentService are in; mind the Stripe rate limit before adding retries' });
  check(Number.isInteger(msg.id), 'gemini: the message has an id', msg);
  const paused = await gemini.call('session_status', { action: 'pause' });
  check(paused.status === 'paused', 'end of day: the session is paused', paused.status);

  for (const c of [claude, gemini]) await c.close();
  return { backendTaskId: backend, unitTestsTaskId: unit, geminiMessageId: msg.id };
}

// Day 2 (after a restart): each resumes and hears what the other did; writes wait for resume.
async function day2() {
  const claude = await connect('claude', state.tokens.claude);
  const r = await claude.call('session', { action: 'resume', strategy: 'deep' });
  check(r.participant === 'claude' && r.role === 'driver', 'claude: briefed as the driver', { participant: r.participant, role: r.role });
  check(r.context?.summary === SUMMARY, 'claude: the shared context survived the restart', r.context);
  const b = r.briefing ?? {};
  out('info', { check: 'claude day 2 briefing', detail: b });
  check(b.strategy === 'deep', 'claude: deep strategy as asked', b.strategy);
  check(b.summary?.includes('Payment Gateway Integration') && b.summary?.includes(SUMMARY) && b.summary?.includes('paused'),
    'claude: the summary names the session, its context summary and that it is paused', b.summary);
  check(same(Object.keys(b.collaboratorUpdates ?? {}), ['gemini']), 'claude: news from gemini only, none of its own', b.collaboratorUpdates);
  const g = b.collaboratorUpdates?.gemini ?? {};
  check(has(g.files, TESTS), "claude: gemini's update lists the test file it changed", g);
  check(!has(g.files, SERVICE), "claude: its own file is not in gemini's update", g.files);
  check(g.lastAction === 'set the session paused', "claude: gemini's last action was the pause", g.lastAction);
  check(has(b.newIssues, 'API rate limiting'), 'claude: the rate limiting discovery is a new issue', b.newIssues);
  const m = (b.messages ?? []).find((x) => x.id === state.geminiMessageId);
  check(m?.from === 'gemini' && m?.text?.includes('rate limit'), "claude: gemini's message is in the briefing", b.messages);
  check(has(b.completed, 'Unit tests'), "claude: gemini's completed task is listed", b.completed);
  check(!has(b.completed, 'Backend service'), 'claude: its own completed task is not news', b.completed);
  check(b.yourLastActivity?.includes(`#${state.backendTaskId}`), "claude: its last activity was completing 'Backend service'", b.yourLastActivity);
  check(has(b.changeAnalysis, `${TESTS}: 1 change(s) by gemini`), 'claude: the change analysis names the test file and gemini', b.changeAnalysis);
  check(b.size?.rawChanges === 1 && b.size?.rawMessages === 1, 'claude: the briefing stands for 1 change and 1 message', b.size);
  check(b.size?.tokens === tokensOf(b), 'claude: size.tokens is the compact JSON bytes / 4', { tokens: b.size?.tokens, measured: tokensOf(b) });

  // The same briefing under a token budget it does not fit.
  const BUDGET = 200;
  check(b.size?.tokens > BUDGET, `the full briefing is over ${BUDGET} tokens (so the budget cuts)`, b.size);
  const small = await claude.call('session', { action: 'resume', strategy: 'deep', maxTokens: BUDGET });
  const sb = small.briefing ?? {};
  out('info', { check: `claude briefing under ${BUDGET} tokens`, detail: small });
  check(sb.size?.tokens <= BUDGET, `maxTokens ${BUDGET}: briefing.size.tokens <= ${BUDGET}`, sb.size);
  check(sb.size?.tokens === tokensOf(sb), `maxTokens ${BUDGET}: size.tokens is what was sent`, { tokens: sb.size?.tokens, measured: tokensOf(sb) });
  check((sb.size?.omitted ?? []).length > 0, `maxTokens ${BUDGET}: the cut parts are named`, sb.size);
  check((sb.alerts ?? []).length === (b.alerts ?? []).length, `maxTokens ${BUDGET}: the alerts are kept`, { full: b.alerts, cut: sb.alerts });
  check(sb.size?.rawTokens === b.size?.rawTokens, `maxTokens ${BUDGET}: the history it stands for is the same`, sb.size);
  check(small.context === undefined ? /context_get/.test(small.contextOmitted ?? '') : sb.size.tokens + tokensOf(small.context) <= BUDGET,
    `maxTokens ${BUDGET}: the context comes only if it fits, else contextOmitted says so`, { contextOmitted: small.contextOmitted });

  // Paused: writes are refused until the session is resumed.
  const focus = { path: 'activeWork.currentFocus', value: 'Error handling and webhooks' };
  const refused = await claude.raw('context_set', focus);
  check(refused.isError === true && refused.structuredContent?.error?.code === 'session_paused',
    'a write while paused is refused with session_paused', refused.structuredContent ?? texts(refused));
  const resumed = await claude.call('session_status', { action: 'resume' });
  check(resumed.status === 'active', 'claude resumes the session', resumed.status);
  const ok = await claude.raw('context_set', focus);
  check(!ok.isError, 'the same write succeeds after resuming', ok.isError ? texts(ok) : ok.structuredContent);

  // Claude's day 2 work: news for gemini.
  await claude.call('changes', {
    action: 'record', filePath: SERVICE, reason: 'error handling',
    before: 'export class PaymentService {\n  charge(amount: number) { return stripe.charges.create({ amount }); }\n}\n',
    after: 'export class PaymentService {\n  async charge(amount: number) {\n    try { return await stripe.charges.create({ amount }); } catch (e) { throw new PaymentError(e); }\n  }\n}\n',
  });
  const errors = await createTask(claude, { description: 'Add error handling', assignedTo: 'claude' });
  const moved = await claude.call('task', { action: 'update', taskId: errors, status: 'in_progress' });
  check(JSON.stringify(moved).includes('in_progress'), 'claude: "Add error handling" in progress', moved);
  const hooks = await createTask(claude, { description: 'Implement webhooks', assignedTo: 'gemini' });
  const note = await claude.call('message_send', { to: 'gemini', body: 'Error handling is underway; the webhooks task is yours' });
  await claude.close();

  // Gemini acted last on day 1 (the pause): its news is what claude did since.
  const gemini = await connect('gemini', state.tokens.gemini);
  const prompt = await gemini.client.getPrompt({ name: 'resume' });
  const text = prompt.messages?.[0]?.content?.text ?? '';
  check(text.startsWith('You are gemini (navigator)') && text.includes(SERVICE) && text.includes('Implement webhooks'),
    'gemini: the resume prompt briefs gemini on claude\'s work', text.slice(0, 600));
  const gr = await gemini.call('session', { action: 'resume' });
  const gb = gr.briefing ?? {};
  out('info', { check: 'gemini day 2 briefing', detail: gb });
  check(gb.strategy === 'quick', 'gemini: quick by default after a short absence', gb.strategy);
  check(gr.context?.activeWork?.currentFocus === focus.value, "gemini: the context has claude's new focus", gr.context?.activeWork);
  check(same(Object.keys(gb.collaboratorUpdates ?? {}), ['claude']), 'gemini: news from claude only, none of its own', gb.collaboratorUpdates);
  const c = gb.collaboratorUpdates?.claude ?? {};
  check(has(c.files, SERVICE), "gemini: claude's update lists the service it changed", c);
  check(!has(c.files, TESTS), "gemini: its own test file is not in claude's update", c.files);
  check(gb.yourLastActivity?.includes('set the session paused'), 'gemini: its last activity was the pause', gb.yourLastActivity);
  check(!has(gb.newIssues, 'rate limiting'), 'gemini: its own discovery is not news', gb.newIssues);
  check((gb.pendingTasks ?? [])[0]?.includes('Implement webhooks (gemini)'), 'gemini: its own pending task first', gb.pendingTasks);
  check(has(gb.inProgress, 'Add error handling (claude)'), "gemini: claude's task in progress", gb.inProgress);
  check((gb.messages ?? []).some((x) => x.id === note.id && x.from === 'claude'), "gemini: claude's message is in the briefing", gb.messages);
  check((gb.suggestions ?? []).some((s) => s.rule === 'ready_task' && s.action.includes(`#${hooks}`)), 'gemini: suggested to start the webhooks task', gb.suggestions);
  check(gb.size?.rawChanges === 1 && gb.size?.rawMessages === 1, 'gemini: the briefing stands for 1 change and 1 message', gb.size);
  await gemini.close();
  return { errorHandlingTaskId: errors, webhooksTaskId: hooks };
}

// Day 3 (after another restart): cursor joins as an observer with skills and is onboarded.
async function day3() {
  const claude = await connect('claude', state.tokens.claude);
  const form = await createTask(claude, { description: 'Create payment form component', skills: ['react'] });
  const go = await createTask(claude, { description: 'Port the worker to Go', skills: ['go'] });

  const cursor = await connect('cursor');
  check(same(await cursor.tools(), ['evolution', 'session_create', 'session_join', 'session_list']), 'cursor: an unbound client sees only evolution/create/join/list', await cursor.tools());
  const joinedRaw = await cursor.raw('session_join', { sessionId: state.sessionId, participant: 'cursor', role: 'observer', skills: ['react'] });
  check(!joinedRaw.isError, 'cursor: session_join succeeds', joinedRaw.isError ? texts(joinedRaw) : undefined);
  check(!JSON.stringify(joinedRaw).includes('chp_'), 'cursor: the tool result carries no token');
  const joined = joinedRaw.structuredContent ?? {};
  check(joined.participant?.aiId === 'cursor' && joined.participant?.role === 'observer', 'cursor joined as an observer', joined.participant);
  const o = joined.onboarding ?? {};
  out('info', { check: 'cursor onboarding', detail: o });
  check(o.projectContext?.includes(SUMMARY) && o.projectContext?.includes('Payment Gateway Integration'), 'onboarding: the project context', o.projectContext);
  check(has(o.completedWork, 'Backend service') && has(o.completedWork, 'Unit tests'), 'onboarding: the completed work', o.completedWork);
  check(has(o.codebaseChanges, `${SERVICE}: 2 change(s) by claude`), 'onboarding: the service, changed twice by claude', o.codebaseChanges);
  check(has(o.codebaseChanges, `${TESTS}: 1 change(s) by gemini`), 'onboarding: the tests, changed by gemini', o.codebaseChanges);
  check(has(o.currentFocus, 'Add error handling') && has(o.currentFocus, 'claude drives'), 'onboarding: the current focus', o.currentFocus);
  const s = o.suggestedTasks ?? [];
  check(s.length === 1 && s[0].action.includes(`#${form}`) && s[0].action.includes('Create payment form component'),
    'onboarding: the react task is suggested, nothing else', { suggested: s, form, go });
  check(s[0]?.action.startsWith('ask for a role') && s[0]?.reason.includes('react') && s[0]?.rule === 'fits_your_skills',
    'onboarding: an observer is told to ask for a role; the reason names the skill', s[0]);

  const me = await cursor.call('whoami', {});
  check(me.aiId === 'cursor' && me.role === 'observer', 'cursor: whoami after joining', me);
  const tools = await cursor.tools();
  check(tools.includes('task') && tools.includes('session') && !tools.includes('context_set') && !tools.includes('session_status'),
    'cursor: observer tools (no writes to the context, no session status)', tools);
  const list = await cursor.call('task', { action: 'list' });
  check((list.tasks ?? []).length === 6, 'cursor: lists every task', list.tasks?.map((t) => t.description));
  const take = await cursor.raw('task', { action: 'create', description: 'Payment form styles' });
  check(take.isError === true, 'cursor: an observer creates no tasks', texts(take));

  const r = await claude.call('session', { action: 'resume' });
  check(r.briefing?.collaboratorUpdates?.cursor?.lastAction === 'joined', 'claude: hears that cursor joined', r.briefing?.collaboratorUpdates);
  for (const c of [claude, cursor]) await c.close();
  return { formTaskId: form };
}

try {
  const days = { day1, day2, day3 };
  if (!days[phase] || !base || !state.sessionId) throw new Error(`usage: --phase day1|day2|day3 <base> <state JSON> (got ${argv.join(' ')})`);
  const next = await days[phase]();
  out('state', { state: { ...state, ...next } });
} catch (e) {
  fail('exception', String(e?.stack ?? e));
}
finish();
