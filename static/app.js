// The dashboard: picks a session, follows it over the hub's WebSocket, and lets a person who
// took a seat (`human:<name>`) steer. Two sockets: the watch, a viewer that follows the session's
// events and the project's lock events and makes every read; and, once a person has a seat, the
// seat's own socket (after `auth`) that makes every action. Reads and actions are `call` frames
// (the MCP tools by name); the view is the session as `session_get` shows it with the events
// folded on top (model.js), plus the hub's own task, lock and suggestion lists, drawn by views.js.

import { HubConnection, HubError } from "./hub.js";
import { SessionModel, LOCK_KINDS, category, receiptsSignature } from "./model.js";
import * as views from "./views.js";
import { $, h, fill, relative, countdown, download } from "./dom.js";
import { initialEvolution, readEvolution, renderEvolution } from "./evolution.js";

const app = {
  watch: null, // the viewer socket: session list, events, reads
  seatConn: null, // the seat's socket: actions
  sessions: [],
  sessionsLoaded: false,
  project: "",
  model: null,
  seat: null, // { aiId, token, role, authed }
  tasks: null,
  locks: null,
  suggestions: null,
  context: null,
  records: null,
  evolution: null, // the evolution panel's reads (evolution.js)
  receipts: null, // message id → the message as `messages_read` lists it for the operator (receipts)
  receiptsSig: "",
  receiptsNoticed: new Map(), // "id aiId state" → when this page first saw a receipt appear

  filters: { kind: "conversation", ai: "", priority: "" },
  // What a person typed or picked in controls that live updates redraw.
  ui: { timelineLimit: 200, confirmComplete: false, reviewNotes: "", passTo: "", assign: new Map(), notes: new Map(), openReceipts: new Set() },
  subs: { session: null, project: null, projectSessions: [], projectPending: false },
  replayTarget: 0,
  live: false,
  act: {},
};

// ------------------------------------------------------------------ rendering

const dirty = new Set();
let frame = 0;

const RENDER = {
  overview: views.renderOverview,
  seat: views.renderSeat,
  people: views.renderPeople,
  handshake: views.renderHandshake,
  timeline: views.renderTimeline,
  tasks: views.renderTasks,
  locks: views.renderLocks,
  suggestions: views.renderSuggestions,
  reports: views.renderReports,
  context: views.renderContext,
  metrics: views.renderMetrics,
  records: views.renderRecords,
  evolution: renderEvolution,
  options: views.renderPeopleOptions,
};

function markDirty(...names) {
  for (const n of names.flat()) dirty.add(n);
  if (!frame) frame = requestAnimationFrame(flush);
}

function flush() {
  frame = 0;
  if (!app.model) return dirty.clear();
  const names = [...dirty];
  dirty.clear();
  for (const name of names) {
    try {
      RENDER[name]?.(app);
    } catch (e) {
      // A drawing bug must not take the rest of the page down; it shows as a notice.
      showError(e, `Drawing the ${name} panel`);
    }
  }
}

const MODEL_VIEWS = ["overview", "timeline", "metrics"];
const PEOPLE_VIEWS = ["people", "options", "seat", "handshake", "tasks", "locks", "suggestions", "overview"];

// ------------------------------------------------------------------ notices

let toastTimer = 0;

function toast(text) {
  const el = $("#toast");
  el.textContent = text;
  el.classList.add("shown");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    el.classList.remove("shown");
    el.textContent = "";
  }, 6000);
}

function showError(err, doing) {
  const code = err?.code && err.code !== "error" ? err.code : null;
  const bits = [code, err?.field ? `field ${err.field}` : null].filter(Boolean).join(", ");
  $("#notice-text").textContent = `${doing} failed: ${err?.message || String(err)}${bits ? ` [${bits}]` : ""}`;
  $("#notice").hidden = false;
}

function clearError() {
  $("#notice").hidden = true;
  $("#notice-text").textContent = "";
}

/**
 * Runs one `call` for the person: an action on the seat's socket (the default), or a read on
 * the watch (`conn`). Its error is shown, its success noted.
 */
async function run(doing, operation, args, done, conn = app.seatConn) {
  try {
    if (!conn) throw new HubError({ code: "no_seat", message: "take a seat first: a viewer may only watch and read" }, operation);
    const ok = await conn.call(operation, args);
    clearError();
    if (done) done(ok);
    return ok;
  } catch (e) {
    showError(e, doing);
    return null;
  }
}

function sid() {
  return app.model?.sessionId;
}

// ------------------------------------------------------------------ connection

function connState(state, info = {}) {
  const el = $("#conn");
  el.dataset.state = state;
  if (state === "open") {
    el.textContent = app.model && !app.live ? "Catching up…" : "Live";
  } else if (state === "connecting") {
    el.textContent = "Connecting…";
  } else if (state === "reconnecting") {
    app.live = false;
    el.textContent = info.wait ? `Connection lost; retrying in ${Math.ceil(info.wait / 1000)} s…` : "Reconnecting…";
  } else {
    el.textContent = "Offline";
  }
}

function setLive() {
  const was = app.live;
  app.live = true;
  // The replay is in: the messages it brought get their receipts.
  if (!was && app.model) scheduleRefresh("receipts", 0);
  if (app.watch?.isOpen) {
    $("#conn").textContent = "Live";
    $("#conn").dataset.state = "live";
  }
}

/** (Re)builds the watch: on start and whenever another session is chosen. */
function connect() {
  app.watch?.stop();
  app.subs = { session: null, project: null, projectSessions: [], projectPending: false };
  app.live = false;
  app.watch = new HubConnection({ onopen: onOpen, onframe: onFrame, onstate: connState });
  app.watch.start();
}

async function onOpen() {
  app.subs = { session: null, project: null, projectSessions: [], projectPending: false };
  const watch = app.watch;
  try {
    await refreshSessions();
    if (!app.model || watch !== app.watch) return;
    await readSession();
    await subscribeSession();
    refreshAll();
    await subscribeProject();
  } catch (e) {
    if (watch === app.watch && e.code !== "disconnected") showError(e, "Following the session");
  }
}

/** The session as the hub holds it now; the events after it fold on top. */
async function readSession() {
  const model = app.model;
  const view = await app.watch.call("session_get", { sessionId: model.sessionId });
  if (model !== app.model) return;
  markDirty(model.seed(view), PEOPLE_VIEWS);
}

async function subscribeSession() {
  const model = app.model;
  const ok = await app.watch.request({ type: "subscribe", sessionId: model.sessionId, since: model.cursor });
  if (model !== app.model) return;
  app.subs.session = ok.subscription;
  const last = (ok.sessions || []).find((x) => x.sessionId === model.sessionId)?.lastEventId ?? 0;
  app.replayTarget = Math.max(app.replayTarget, last);
  if (model.cursor >= app.replayTarget) setLive();
  else connState("open");
}

/**
 * Lock events of every open session of the project (the lock table is the project's). A
 * project subscription covers the sessions open when it is made: when the session list shows a
 * newer one, it is made again (`refreshSessions`).
 */
async function subscribeProject() {
  const { model, watch, subs } = app;
  if (!model?.project || subs.projectPending) return;
  subs.projectPending = true;
  try {
    const ok = await watch.request({ type: "subscribe", project: model.project, kinds: LOCK_KINDS });
    if (subs.project) watch.request({ type: "unsubscribe", subscription: subs.project }).catch(() => {});
    subs.project = ok.subscription;
    subs.projectSessions = (ok.sessions || []).map((x) => x.sessionId);
  } finally {
    subs.projectPending = false;
  }
  scheduleRefresh("locks", 0);
}

function onFrame(f) {
  if (f.type === "event" || f.type === "interrupt") {
    if (!app.model) return;
    if (f.subscription !== app.subs.session) {
      // The project's lock events (ours come on both subscriptions).
      if (LOCK_KINDS.includes(f.kind)) scheduleRefresh("locks");
      return;
    }
    const changed = app.model.apply(f, f.type === "event");
    if (changed.length === 0) return;
    markDirty(MODEL_VIEWS, changed, changed.includes("people") ? PEOPLE_VIEWS : []);
    afterEvent(f);
    if (!app.live && app.model.cursor >= app.replayTarget) setLive();
    return;
  }
  if (f.type === "resync" && app.model) {
    if (f.subscription === app.subs.project) {
      subscribeProject().catch(() => {});
    } else if (f.subscription === app.subs.session) {
      // Our queue was dropped: read again from the log after the last event we hold.
      app.live = false;
      connState("open");
      const since = Math.min(app.model.cursor, Math.max(0, (f.from ?? app.model.cursor + 1) - 1));
      app.model.cursor = since;
      subscribeSession().catch((e) => showError(e, "Catching up after falling behind"));
    }
    return;
  }
  if (f.type === "error") showError({ code: f.error?.code, message: f.error?.message }, "A frame the page sent");
}

/** Live events refresh the views that are the hub's lists rather than folded from events. */
function afterEvent(f) {
  // Replayed history: the reads made right after subscribing already cover it.
  if (f.id <= app.replayTarget) return;
  const kind = f.kind;
  const cat = category(kind);
  if (LOCK_KINDS.includes(kind) || kind === "participant_left" || kind === "task_status_changed") scheduleRefresh("locks");
  if (cat === "task") scheduleRefresh("tasks");
  if (kind.startsWith("suggestion_")) scheduleRefresh("suggestions");
  // Sent, acknowledged, overdue: read the receipts again once the hub's delivery batch (about
  // 200 ms) has been written.
  if (cat === "message") scheduleRefresh("receipts", RECEIPTS_AFTER_EVENT_MS);
  if (Array.isArray(f.payload?.changes) && cat !== "role") scheduleRefresh("context");
  if (kind === "participant_joined" || kind === "participant_left" || kind === "session_status_changed") scheduleRefresh("sessions");
  if (kind === "session_status_changed") {
    markDirty("evolution");
    // Completed: the hub measures the session and scores it in the background.
    if (f.payload?.to === "completed") scheduleRefresh("evolution", EVOLUTION_AFTER_COMPLETE_MS);
  }
  if (app.seat?.authed && f.to === app.seat.aiId && f.priority === "critical") {
    toast(`For you: ${app.model.events.find((e) => e.id === f.id)?.text || kind}`);
  }
  if (app.seat?.authed) scheduleAck();
}

// ------------------------------------------------------------------ the seat's socket

/** (Re)builds the seat's socket (after taking a seat, or with a saved one); closes it without. */
function connectSeat() {
  app.seatConn?.stop();
  app.seatConn = null;
  if (!app.seat?.token || !app.model) return;
  const conn = new HubConnection({
    onopen: () => authenticate(conn),
    onstate: (state) => {
      // Actions wait for the socket to be back and signed in.
      if (state !== "open" && conn === app.seatConn && app.seat?.authed) {
        app.seat.authed = false;
        markDirty(PEOPLE_VIEWS);
      }
    },
  });
  app.seatConn = conn;
  conn.start();
}

async function authenticate(conn) {
  const model = app.model;
  try {
    const ok = await conn.request({ type: "auth", token: app.seat.token });
    if (conn !== app.seatConn) return;
    if (ok.sessionId !== model.sessionId) {
      throw new HubError({ code: "wrong_session", message: ok.sessionId ? `this token belongs to another session (${ok.sessionId})` : "this is not a participant's token" });
    }
    app.seat = { ...app.seat, aiId: ok.aiId, role: ok.role, authed: true };
    saveSeat();
  } catch (e) {
    if (conn !== app.seatConn || e.code === "disconnected" || e.code === "timeout") return;
    showError(e, `Signing in as ${app.seat.aiId || "the saved seat"}`);
    forgetSeat();
    connectSeat();
    return;
  } finally {
    markDirty(PEOPLE_VIEWS);
  }
  // The page reads events on the watch; listening here too is what shows the person as
  // connected (presence). Critical ones only, from what the page already holds.
  conn.request({ type: "subscribe", sessionId: model.sessionId, since: model.cursor, minPriority: "critical" }).catch(() => {});
}

let ackTimer = 0;
function scheduleAck() {
  clearTimeout(ackTimer);
  ackTimer = setTimeout(() => {
    if (document.visibilityState !== "visible" || !app.seat?.authed || !app.seatConn?.isOpen) return;
    // What the page shows, the person has seen: move their delivery cursor.
    app.seatConn.request({ type: "ack", upTo: app.model.cursor, sessionId: sid() }).catch(() => {});
  }, 2000);
}

// ------------------------------------------------------------------ reads

const refreshTimers = new Map();

function scheduleRefresh(what, wait = 120) {
  if (refreshTimers.has(what)) return;
  refreshTimers.set(what, setTimeout(() => {
    refreshTimers.delete(what);
    READS[what]?.().catch((e) => {
      if (e.code !== "disconnected") showError(e, `Reading ${what}`);
    });
  }, wait));
}

/** One of the hub's lists (`task`, `lock`, `suggestion` with action `list`). */
async function readList(what, operation) {
  const model = app.model;
  if (!model) return;
  const ok = await app.watch.call(operation, { sessionId: model.sessionId, action: "list" });
  if (model !== app.model) return;
  app[what] = ok[what] || [];
  markDirty(what);
}

/** Receipts of the newest messages: at most this many per read (the hub's limit). */
const RECEIPTS_LIMIT = 200;
const RECEIPTS_AFTER_EVENT_MS = 600;
/**
 * Delivered and shown receipts are written without events of their own, so while the page is
 * visible they are read again this often (one call: far below a viewer's 10 calls a second).
 */
const RECEIPTS_EVERY_MS = 5000;

/**
 * The receipts of the newest messages: `messages_read` as the operator (a viewer's call lists
 * every message with every receipt and marks nothing read). Redraws the timeline only when a
 * receipt changed; notes when this page first saw each new one (the list has times for shown
 * receipts only).
 */
async function readReceipts() {
  const model = app.model;
  if (!model || !model.events.some((e) => e.kind === "message_sent")) return;
  const ok = await app.watch.call("messages_read", { sessionId: model.sessionId, limit: RECEIPTS_LIMIT });
  if (model !== app.model) return;
  const messages = ok.messages || [];
  const sig = receiptsSignature(messages);
  if (sig === app.receiptsSig) return;
  if (app.receipts) {
    const now = new Date().toISOString();
    for (const m of messages) {
      const old = app.receipts.get(m.id) || {};
      for (const [state, field] of [["delivered", "deliveredTo"], ["read", "readBy"], ["acked", "ackedBy"]]) {
        for (const who of m[field] || []) {
          const key = `${m.id} ${who} ${state}`;
          if (!(old[field] || []).includes(who) && !app.receiptsNoticed.has(key)) app.receiptsNoticed.set(key, now);
        }
      }
    }
  }
  app.receipts = new Map(messages.map((m) => [m.id, m]));
  app.receiptsSig = sig;
  markDirty("timeline");
}

/** The evolution panel: read again this often while the page is visible (cheap reads). */
const EVOLUTION_EVERY_MS = 30_000;
/** After the session completes: its score is usually there this soon. */
const EVOLUTION_AFTER_COMPLETE_MS = 1500;
/** Completed but not scored yet: look again after this long (no faster than the hub needs). */
const EVOLUTION_SCORE_RETRY_MS = 10_000;

let evolutionQueue = Promise.resolve();

/**
 * The evolution panel's reads (evolution.js), one at a time. A failure shows in the panel (what
 * was read before stays), not as the page's notice: the panel is a side view.
 */
function readEvolutionPanel(force = false) {
  const run = async () => {
    const { model, evolution } = app;
    if (!model || !evolution || !app.watch?.isOpen) return;
    try {
      const { scorePending } = await readEvolution(app.watch, evolution, model.status, { force });
      if (scorePending && evolution === app.evolution) scheduleRefresh("evolution", EVOLUTION_SCORE_RETRY_MS);
    } catch {
      // evolution.error holds it; drawn below.
    }
    if (evolution === app.evolution) markDirty("evolution");
  };
  evolutionQueue = evolutionQueue.then(run, run);
  return evolutionQueue;
}

const READS = {
  receipts: readReceipts,
  evolution: () => readEvolutionPanel(false),
  sessions: refreshSessions,
  tasks: () => readList("tasks", "task"),
  async locks() {
    expiredSeen.clear();
    await readList("locks", "lock");
  },
  suggestions: () => readList("suggestions", "suggestion"),
  async context() {
    const model = app.model;
    const ok = await app.watch.call("context_get", { sessionId: model.sessionId });
    if (model !== app.model) return;
    app.context = ok;
    markDirty("context");
  },
};

function refreshAll() {
  for (const what of ["tasks", "locks", "suggestions", "context", "receipts", "evolution"]) scheduleRefresh(what, 0);
}

async function refreshSessions() {
  const ok = await app.watch.call("session_list", { limit: 100 });
  app.sessions = ok.sessions || [];
  app.sessionsLoaded = true;
  renderPicker();
  if (!app.model) return;
  markDirty("overview", "locks");
  // A session of the project that opened after the project subscription: subscribe again.
  const project = app.model.project;
  if (app.subs.project && app.sessions.some((x) => x.project === project && x.status !== "completed" && !app.subs.projectSessions.includes(x.sessionId))) {
    await subscribeProject();
  }
}

function renderPicker() {
  const projects = [...new Set(app.sessions.map((x) => x.project))].sort();
  const projectSelect = $("#project");
  fill(projectSelect, h("option", { value: "" }, "All projects"), projects.map((p) => h("option", { value: p }, p)));
  const current = app.sessions.find((x) => x.sessionId === sid());
  if (app.project && !projects.includes(app.project)) app.project = "";
  projectSelect.value = app.project;
  const shown = app.sessions.filter((x) => !app.project || x.project === app.project);
  const sessionSelect = $("#session");
  fill(sessionSelect, h("option", { value: "" }, shown.length ? "Choose a session…" : "No sessions in this project"),
    shown.map((x) => h("option", { value: x.sessionId }, `${x.name} — ${x.status}${app.project ? "" : ` · ${x.project}`}`)),
    current && !shown.includes(current) ? h("option", { value: current.sessionId }, `${current.name} — ${current.status} · ${current.project}`) : null);
  sessionSelect.value = sid() || "";
  $("#empty-detail").textContent = app.sessions.length
    ? `${app.sessions.length} session${app.sessions.length === 1 ? "" : "s"} on this hub.`
    : "This hub has no sessions yet: agents create them with session_create (or POST /mcp/session/create).";
}

// ------------------------------------------------------------------ choosing a session

function seatKey(sessionId) {
  return `collab-hub:seat:${sessionId}`;
}

function loadSeat(sessionId) {
  try {
    const saved = JSON.parse(localStorage.getItem(seatKey(sessionId)) || "null");
    return saved?.token ? { aiId: saved.aiId, token: saved.token, role: null, authed: false } : null;
  } catch {
    return null;
  }
}

function saveSeat() {
  if (app.seat && sid()) localStorage.setItem(seatKey(sid()), JSON.stringify({ aiId: app.seat.aiId, token: app.seat.token }));
}

function forgetSeat() {
  if (sid()) localStorage.removeItem(seatKey(sid()));
  app.seat = null;
}

function chooseSession(sessionId) {
  if (sessionId === (sid() || "")) return;
  clearError();
  app.model = sessionId ? new SessionModel(sessionId) : null;
  app.tasks = app.locks = app.suggestions = app.context = app.records = null;
  app.evolution = sessionId ? initialEvolution(sessionId) : null;
  app.replayTarget = 0;
  app.receipts = null;
  app.receiptsSig = "";
  app.receiptsNoticed = new Map();
  app.ui = { timelineLimit: 200, confirmComplete: false, reviewNotes: "", passTo: "", assign: new Map(), notes: new Map(), openReceipts: new Set() };
  app.seat = sessionId ? loadSeat(sessionId) : null;
  const summary = app.sessions.find((x) => x.sessionId === sessionId);
  if (summary) app.project = summary.project;
  $("#board").hidden = !sessionId;
  $("#empty").hidden = Boolean(sessionId);
  renderPicker();
  document.title = summary ? `${summary.name} · collab-hub` : "collab-hub";
  if (sessionId) markDirty(Object.keys(RENDER));
  connect();
  connectSeat();
}

function sessionFromHash() {
  const m = /session=([0-9a-fA-F-]{36})/.exec(location.hash);
  return m ? m[1].toLowerCase() : "";
}

// ------------------------------------------------------------------ actions

function feedbackLines() {
  return app.ui.reviewNotes.split("\n").map((l) => l.trim()).filter(Boolean);
}

Object.assign(app.act, {
  async status(action) {
    app.ui.confirmComplete = false;
    await run(`${action[0].toUpperCase()}${action.slice(1)} the session`, "session_status", { sessionId: sid(), action }, () => toast(`Session ${action === "complete" ? "completed" : action === "pause" ? "paused" : "resumed"}.`));
    markDirty("overview");
  },
  confirmComplete(on) {
    app.ui.confirmComplete = on;
    markDirty("overview");
  },
  async requestRole(role) {
    await run(`Asking for the ${role} role`, "role", { sessionId: sid(), action: "request", role, reason: "asked from the dashboard" },
      (ok) => toast(ok.status === "changed" ? `You are now ${role}.` : `Asked to become ${role}; the driver decides.`));
  },
  async respondRole(requestId, grant) {
    await run(grant ? "Granting the role" : "Refusing the role", "role", { sessionId: sid(), action: "respond", requestId, grant }, () => toast(grant ? "Role granted." : "Request refused."));
  },
  async reviewStart() {
    await run("Starting the review", "handshake", { sessionId: sid(), step: "review_start", acknowledgeId: app.model.handshake.id }, () => toast("You are reviewing."));
  },
  async reviewComplete(approved) {
    const hs = app.model.handshake;
    const notes = feedbackLines();
    if (!approved && notes.length === 0) {
      showError({ code: "invalid_field", field: "feedback.issues", message: "write what should change (one issue per line) before requesting changes" }, "Requesting changes");
      $("#review-notes")?.focus();
      return;
    }
    if (hs.state === "awaiting_review") {
      const started = await run("Starting the review", "handshake", { sessionId: sid(), step: "review_start", acknowledgeId: hs.id });
      if (!started) return;
    }
    const feedback = approved ? { approved: true, suggestions: notes, issues: [] } : { approved: false, suggestions: [], issues: notes };
    await run(approved ? "Approving the review" : "Requesting changes", "handshake", { sessionId: sid(), step: "review_complete", feedback, passControl: true },
      () => {
        app.ui.reviewNotes = "";
        toast(approved ? "Approved; control goes back to the driver." : "Changes requested; control goes back to the driver.");
      });
  },
  async workComplete() {
    await run("Finishing work", "handshake", { sessionId: sid(), step: "work_complete", needsReview: true, message: "finished from the dashboard" }, () => toast("Work sent for review."));
  },
  async handshakeCancel() {
    await run("Cancelling the handshake", "handshake", { sessionId: sid(), step: "cancel", reason: "cancelled from the dashboard" }, () => toast("Handshake cancelled."));
  },
  async controlReceived() {
    await run("Taking control back", "handshake", { sessionId: sid(), step: "control_received" }, () => toast("You have control again."));
  },
  async passControl(aiId) {
    if (!aiId) return;
    await run(`Passing control to ${aiId}`, "role", { sessionId: sid(), action: "assign", roles: { [aiId]: "driver" }, reason: `${app.seat.aiId} passed control from the dashboard` },
      (ok) => toast(ok.status === "pending" ? `Control passes to ${aiId} when the open handshake closes.` : `${aiId} drives now.`));
  },
  async forceRelease(lock) {
    await run(`Force-releasing ${lock.resource}`, "lock", { sessionId: sid(), action: "release", lockId: lock.id, force: true },
      () => { toast(`Released ${lock.resource}; ${lock.holder} is told.`); scheduleRefresh("locks", 0); });
  },
  async releaseLock(lock) {
    await run(`Releasing ${lock.resource}`, "lock", { sessionId: sid(), action: "release", lockId: lock.id }, () => scheduleRefresh("locks", 0));
  },
  async unblockTask(taskId) {
    await run(`Unblocking task #${taskId}`, "task", { sessionId: sid(), action: "update", taskId, status: "pending", reason: `unblocked by ${app.seat.aiId}` },
      () => { toast(`Task #${taskId} is pending again.`); scheduleRefresh("tasks", 0); });
  },
  async assignTask(taskId, assignedTo) {
    await run(`Reassigning task #${taskId}`, "task", { sessionId: sid(), action: "assign", taskId, assignedTo },
      () => { app.ui.assign.delete(taskId); toast(`Task #${taskId} goes to ${assignedTo}.`); scheduleRefresh("tasks", 0); });
  },
  async resolveSuggestion(id, accept) {
    const note = app.ui.notes.get(id)?.trim() || undefined;
    await run(accept ? `Accepting suggestion #${id}` : `Rejecting suggestion #${id}`, "suggestion", { sessionId: sid(), action: "resolve", id, accept, note },
      () => { app.ui.notes.delete(id); toast(accept ? `Suggestion #${id} accepted.` : `Suggestion #${id} rejected.`); scheduleRefresh("suggestions", 0); });
  },
  signOut() {
    forgetSeat();
    connectSeat();
    markDirty(PEOPLE_VIEWS);
  },
});

async function joinSeat(event) {
  event.preventDefault();
  const name = $("#seat-name").value.trim();
  const role = $("#seat-role").value;
  if (!$("#seat-form").reportValidity()) return;
  const participant = `human:${name}`;
  const button = $("#seat-join");
  button.disabled = true;
  try {
    const ok = await run(`Taking the seat ${participant}`, "session_join", { sessionId: sid(), participant, role }, null, app.watch);
    if (!ok) return;
    const token = ok.token || ok.tokens?.[participant];
    if (!token) {
      showError({ code: "no_token", message: "the hub joined you but sent no token to act with" }, "Taking the seat");
      return;
    }
    app.seat = { aiId: participant, token, role, authed: false };
    saveSeat();
    toast(`You joined as ${participant} (${role}).`);
    connectSeat();
    markDirty(PEOPLE_VIEWS);
  } finally {
    button.disabled = false;
  }
}

async function useToken() {
  const token = $("#seat-token").value.trim();
  if (!token) return;
  app.seat = { aiId: "", token, role: null, authed: false };
  $("#seat-token").value = "";
  connectSeat();
  markDirty(PEOPLE_VIEWS);
}

async function sendMessage(event) {
  event.preventDefault();
  const body = $("#msg-body").value;
  if (!body.trim()) return;
  const to = $("#msg-to").value || undefined;
  const button = $("#msg-send");
  button.disabled = true;
  try {
    const ok = await run("Sending the message", "message_send", {
      sessionId: sid(), to, priority: $("#msg-priority").value, body, requiresAck: $("#msg-ack").checked || undefined,
    });
    if (ok) {
      $("#msg-body").value = "";
      toast(`Message #${ok.id} sent${to ? ` to ${to}` : " to everyone"}.`);
    }
  } finally {
    button.disabled = false;
  }
}

async function saveSnapshot() {
  await run("Saving a snapshot", "session", { sessionId: sid(), action: "save", trigger: "manual" }, (ok) => {
    app.records = { kind: "snapshot", value: ok };
    markDirty("records");
  });
}

async function loadBriefing() {
  const forWhom = app.seat?.authed ? app.seat.aiId : $("#briefing-for").value;
  const args = { sessionId: sid(), action: "resume", participant: forWhom || undefined, includeContext: false };
  await run(`Loading ${forWhom ? `${forWhom}'s` : "the"} briefing`, "session", args, (ok) => {
    app.records = { kind: "briefing", value: ok, for: forWhom };
    markDirty("records");
  }, app.watch);
}

const EXPORT_TYPES = {
  markdown: ["md", "text/markdown"],
  json: ["json", "application/json"],
  html: ["html", "text/html"],
};

async function exportSession(format) {
  await run(`Exporting as ${format}`, "session", { sessionId: sid(), action: "export", format, includeCode: $("#export-code").checked }, (ok) => {
    const content = typeof ok.content === "string" ? ok.content : JSON.stringify(ok.content, null, 2);
    const [ext, type] = EXPORT_TYPES[format];
    const base = (app.model.name || "session").toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "") || "session";
    const name = `${base}.${ext}`;
    download(name, content, type);
    app.records = { kind: "export", format, name, bytes: new Blob([content]).size };
    markDirty("records");
  }, app.watch);
}

// ------------------------------------------------------------------ the clock

const expiredSeen = new Set();

function tick() {
  const now = Date.now();
  for (const el of document.querySelectorAll("time[data-relative]")) {
    const text = relative(el.getAttribute("datetime"), now);
    if (el.textContent !== text) el.textContent = text;
  }
  for (const el of document.querySelectorAll(".countdown[data-expires]")) {
    const text = countdown(el.dataset.expires, now);
    if (el.textContent !== text) el.textContent = text;
    if (text === "expired" && !expiredSeen.has(el.dataset.expires)) {
      expiredSeen.add(el.dataset.expires);
      el.classList.add("stale");
      // The hub releases an expired lease on its own; read the table again a moment later.
      scheduleRefresh("locks", 1500);
    }
  }
}

// ------------------------------------------------------------------ start

function wire() {
  views.setupTimelineFilters(app);
  $("#project").addEventListener("change", (e) => {
    app.project = e.target.value;
    renderPicker();
  });
  $("#session").addEventListener("change", (e) => {
    const id = e.target.value;
    location.hash = id ? `session=${id}` : "";
  });
  $("#refresh-sessions").addEventListener("click", () => refreshSessions().catch((e) => showError(e, "Listing sessions")));
  window.addEventListener("hashchange", () => chooseSession(sessionFromHash()));
  $("#notice-close").addEventListener("click", clearError);
  $("#seat-form").addEventListener("submit", joinSeat);
  $("#seat-token-use").addEventListener("click", useToken);
  $("#composer").addEventListener("submit", sendMessage);
  $("#msg-body").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("#composer").requestSubmit();
  });
  $("#filters").addEventListener("change", () => {
    app.filters = { kind: $("#filter-kind").value, ai: $("#filter-ai").value, priority: $("#filter-priority").value };
    app.ui.timelineLimit = 200;
    markDirty("timeline");
  });
  $("#timeline-more").addEventListener("click", () => {
    app.ui.timelineLimit += 200;
    markDirty("timeline");
  });
  $("#evolution-refresh").addEventListener("click", async (e) => {
    const button = e.currentTarget;
    if (button.disabled || !app.model) return;
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    try {
      await readEvolutionPanel(true);
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  });
  $("#snapshot-save").addEventListener("click", saveSnapshot);
  $("#briefing-load").addEventListener("click", loadBriefing);
  for (const b of document.querySelectorAll("[data-export]")) b.addEventListener("click", () => exportSession(b.dataset.export));
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible") return;
    if (app.seat?.authed) scheduleAck();
    if (app.model && app.watch?.isOpen) scheduleRefresh("receipts", 0);
    // Back after a while away: the timer below skipped its reads meanwhile.
    const readAt = Date.parse(app.evolution?.readAt || "");
    if (app.model && app.live && app.watch?.isOpen && !(Date.now() - readAt < EVOLUTION_EVERY_MS)) scheduleRefresh("evolution", 0);
  });
  setInterval(tick, 1000);
  // New sessions and status changes elsewhere reach the pickers, and the project's new
  // sessions its lock subscription.
  setInterval(() => {
    if (app.watch?.isOpen) refreshSessions().catch(() => {});
  }, 10_000);
  // Receipts written without an event (delivered, shown), while someone can see them.
  setInterval(() => {
    if (document.visibilityState === "visible" && app.model && app.live && app.watch?.isOpen) scheduleRefresh("receipts", 0);
  }, RECEIPTS_EVERY_MS);
  // Populations breed as other sessions of the task type are scored: a cheap look now and then.
  setInterval(() => {
    if (document.visibilityState === "visible" && app.model && app.live && app.watch?.isOpen) scheduleRefresh("evolution", 0);
  }, EVOLUTION_EVERY_MS);
  // Recently changed context keys stop being highlighted after five minutes.
  setInterval(() => app.model && markDirty("context"), 30_000);
}

// The composer shows only with a seat: the page never speaks for anyone else.
const seatRender = views.renderSeat;
RENDER.seat = (a) => {
  seatRender(a);
  $("#composer").hidden = !views.acting(a);
};

/** For tests and the curious: drop the socket as a network failure would. */
window.collabHubDebug = {
  dropConnection: () => {
    app.watch?.drop();
    app.seatConn?.drop();
  },
  get cursor() {
    return app.model?.cursor ?? 0;
  },
  get live() {
    return app.live;
  },
};

wire();
const initial = sessionFromHash();
if (initial) chooseSession(initial);
else connect();
