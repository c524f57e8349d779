// The dashboard's picture of one session: the session as `session_get` shows it (`seed`), with
// its event log (replayed from id 0, then live) folded on top. Pure data: no DOM, no socket.
// Tasks, locks, suggestions and the context document are the hub's own lists, read with `call`
// frames (see app.js); everything else here comes from the seed and the events.
//
// Events can arrive out of log order: a critical event comes ahead of queued routine ones as an
// `interrupt`, and comes only once. So every derived value is "the newest by event id wins"
// (the seed counts as the event it was read at) and counters only ever add, which makes the
// fold independent of arrival order.

export const CATEGORIES = [
  ["message", "Messages"],
  ["handshake", "Handshakes"],
  ["role", "Roles"],
  ["task", "Tasks"],
  ["lock", "Locks"],
  ["change", "Changes & suggestions"],
  ["status", "Status reports"],
  ["context", "Context & notes"],
  ["membership", "Joins & leaves"],
  ["presence", "Presence"],
  ["checkpoint", "Checkpoints"],
  ["session", "Session"],
  ["other", "Other"],
];

export function category(kind) {
  switch (kind) {
    case "session_created": case "session_status_changed": case "session_saved": return "session";
    case "participant_joined": case "participant_left": case "token_reissued": return "membership";
    case "message_sent": case "message_acked": case "message_ack_overdue": return "message";
    case "handshake": case "control_passed": case "review_overdue": return "handshake";
    case "role_requested": case "role_request_refused": case "role_changed": case "role_change_pending": return "role";
    case "resource_locked": case "resource_released": case "lock_queued": case "lock_renewed": case "lock_force_released": return "lock";
    case "change_recorded": case "change_conflict": case "suggestion_submitted": case "suggestion_resolved": return "change";
    case "status_reported": return "status";
    case "context_changed": case "memory_pushed": case "memory_cleared": case "notes_updated": case "discovery_reported": return "context";
    case "checkpoint_begun": case "checkpoint_ended": return "checkpoint";
    case "presence_changed": return "presence";
    default: return kind.startsWith("task_") ? "task" : "other";
  }
}

/** Kinds whose events change what `lock list` answers. */
export const LOCK_KINDS = ["resource_locked", "resource_released", "lock_queued", "lock_renewed", "lock_force_released"];

const s = (v) => (v == null ? "" : typeof v === "string" ? v : JSON.stringify(v));
const oneLine = (v, max = 240) => {
  const text = s(v).replace(/\s+/g, " ").trim();
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
};
const list = (a) => (Array.isArray(a) ? a.map(s).join(", ") : "");
const paren = (t) => (t ? ` (${t})` : "");
const colon = (t) => (t ? `: ${t}` : "");

/** One line of text for an event, from its payload (as the export's timeline says it). */
export function describe(kind, p = {}, to) {
  p = p || {};
  switch (kind) {
    case "session_created":
      return `created the session “${s(p.name)}” (${s(p.handshakeMode) || "strict"} handshake; ${(p.participants || []).map((x) => `${x.aiId} ${x.role}`).join(", ") || "nobody yet"})`;
    case "session_status_changed": return `set the session ${s(p.to)} (was ${s(p.from)})`;
    case "participant_joined": return `${s(p.participant?.aiId)} joined as ${s(p.participant?.role)}`;
    case "participant_left": return `${s(p.aiId)} left (was ${s(p.role)})`;
    case "token_reissued": return `${s(p.aiId)} got a fresh token`;
    case "message_sent": {
      const flags = [];
      if (p.replyTo != null) flags.push(`reply to #${p.replyTo}`);
      if (p.requiresAck) flags.push("acknowledgement required");
      return `to ${p.to ? s(p.to) : "everyone"}${paren(flags.join(", "))}: ${oneLine(p.body, 600)}`;
    }
    case "message_acked": return `${s(p.by)} acknowledged ${list(p.ids)}`;
    case "message_ack_overdue": return `message #${s(p.id)} not acknowledged by ${list(p.notAcknowledgedBy)} in time`;
    case "handshake": return handshakeText(p);
    case "control_passed": case "review_overdue": case "lock_force_released": return s(p.summary) || kind.replaceAll("_", " ");
    case "change_conflict": return `conflict on ${s(p.filePath)}: ${s(p.summary)}`;
    case "role_requested": return `${s(p.aiId)} asks to become ${s(p.role)}${colon(s(p.reason))}`;
    case "role_request_refused": return `refused ${s(p.aiId)}'s request to become ${s(p.role)}${colon(s(p.note))}`;
    case "role_changed": return `roles changed: ${s(p.summary)}${paren(s(p.reason))}`;
    case "role_change_pending": return `role change waits for the open handshake: ${Object.entries(p.roles || {}).map(([k, v]) => `${k} → ${v}`).join(", ")}`;
    case "task_created": {
      const t = p.task || {};
      return `created task${t.parent != null ? ` (subtask of #${t.parent})` : ""}${t.assignedTo ? ` for ${t.assignedTo}` : ""}: ${oneLine(t.description)}`;
    }
    case "task_assigned": return `assigned task #${s(p.taskId)}${to ? ` to ${to}` : ""}${p.how && p.how !== "assigned" ? ` (by ${p.how})` : ""}: ${oneLine(p.description)}`;
    case "task_status_changed": return `task #${s(p.taskId)}: ${p.from && p.from !== p.to ? `${p.from} → ${p.to}` : s(p.to)}${colon(s(p.reason))}`;
    case "task_handed_off": return `handed off task #${s(p.taskId)}: ${oneLine(p.description)}`;
    case "task_claimed": return `claimed task #${s(p.taskId)}`;
    case "resource_locked": return `locked ${s(p.resource)} (${s(p.mode)})${colon(s(p.operation))}`;
    case "lock_queued": return `waits for ${s(p.resource)} (${s(p.mode)}) behind ${(p.behind || []).map((b) => `#${b}`).join(", ")}`;
    case "resource_released": return `${s(p.by)}'s lock on ${s(p.resource)} released (${s(p.reason)})`;
    case "lock_renewed": return `renewed the lock on ${s(p.resource)}`;
    case "change_recorded": return `${s(p.operation) || "edit"} ${s(p.filePath)}${p.newPath ? ` → ${p.newPath}` : ""}${colon(s(p.reason))}`;
    case "suggestion_submitted": return `suggests a change to ${s(p.filePath)}${colon(s(p.reason))}`;
    case "suggestion_resolved": return `${p.accepted ? "accepted" : "rejected"} suggestion #${s(p.id)}${colon(s(p.note))}`;
    case "status_reported": return `${s(p.kind)} ${s(p.status)}${p.recovered ? " (recovered)" : ""}: ${oneLine(p.summary)}`;
    case "discovery_reported": return `${s(p.discovery?.severity)} discovery: ${oneLine(p.discovery?.finding)}${paren(s(p.discovery?.location))}`;
    case "context_changed": case "memory_pushed": case "memory_cleared": case "notes_updated": {
      const what = { context_changed: "updated the shared context", memory_pushed: "pushed to working memory", memory_cleared: "cleared working memory", notes_updated: "updated its notes" }[kind];
      const paths = (p.changes || []).map((c) => c.path).filter(Boolean);
      return `${what}${colon(paths.slice(0, 6).join(", ") + (paths.length > 6 ? ` and ${paths.length - 6} more` : ""))}`;
    }
    case "checkpoint_begun": return `focus: ${s(p.task)} (about ${s(p.estimatedSecs)} s${p.interruptible === false ? ", not interruptible" : ""})`;
    case "checkpoint_ended": return `ended focus on ${s(p.task)} after ${s(p.ranSecs)} s (${s(p.reason)})`;
    case "presence_changed": return `${s(p.aiId)} is ${s(p.state)}`;
    default: return `${kind.replaceAll("_", " ")}${colon(s(p.summary))}`;
  }
}

function handshakeText(p) {
  switch (p.step) {
    case "work_complete":
      return `work complete${p.needsReview === false ? " (no review needed)" : ", review requested"}${colon(list(p.changes))}${p.message ? ` — ${oneLine(p.message)}` : ""}`;
    case "review_start": return `started reviewing handshake #${s(p.handshakeId)}`;
    case "review_complete": {
      const f = p.feedback || {};
      const notes = [...(f.suggestions || []), ...(f.issues || [])];
      return `review of #${s(p.handshakeId)}: ${f.approved ? "approved" : "changes requested"}${p.passControl ? ", control passed back" : ""}${notes.length ? ` — ${oneLine(notes.join("; "))}` : ""}`;
    }
    case "control_received": return `took control back${p.nextAction ? `, next: ${oneLine(p.nextAction)}` : ""}`;
    case "cancel": return `cancelled handshake #${s(p.handshakeId)}${colon(s(p.reason))}`;
    default: return `handshake ${s(p.step)}${colon(s(p.reason) || s(p.summary))}`;
  }
}

const RECENT_MS = 5 * 60 * 1000;

function emptyMetrics() {
  return { messages: 0, handoffs: 0, reviews: 0, conflicts: 0, tasksCompleted: 0, changes: 0, locks: 0 };
}

/**
 * Who a message is for: its recipient; for a broadcast, every active participant but the
 * sender, and anyone who has a receipt of it (who may have left since). `participants` is the
 * model's map (aiId → {active}).
 */
export function recipientsOf(message, participants) {
  if (message.to) return [message.to];
  const names = new Set();
  for (const p of participants.values()) if (p.active && p.aiId !== message.from) names.add(p.aiId);
  for (const list of [message.deliveredTo, message.readBy, message.ackedBy]) for (const n of list || []) names.add(n);
  for (const x of message.shownTo || []) names.add(x.aiId);
  names.delete(message.from);
  return [...names].sort();
}

/**
 * The receipts of one message per recipient, from the hub's message list (`messages_read` as
 * the operator, which lists every receipt of every message): delivered (handed to one of the
 * reader's streams, or returned in a result), shown (put before its model: when and how),
 * read (`messages_read` returned it), acknowledged. Each is its own fact: shown is not read,
 * read is not acknowledged.
 */
export function receiptRows(message, participants) {
  const has = (list, aiId) => (list || []).includes(aiId);
  return recipientsOf(message, participants).map((aiId) => {
    const shown = (message.shownTo || []).find((x) => x.aiId === aiId) || null;
    return {
      aiId,
      delivered: has(message.deliveredTo, aiId) || Boolean(shown) || has(message.readBy, aiId) || has(message.ackedBy, aiId),
      shown: shown ? { at: shown.at, via: shown.via } : null,
      read: has(message.readBy, aiId),
      acked: has(message.ackedBy, aiId),
    };
  });
}

/** What changes in the receipts of a message list: a stable text to compare two reads by. */
export function receiptsSignature(messages) {
  return JSON.stringify((messages || []).map((m) => [m.id, m.deliveredTo, m.shownTo, m.readBy, m.ackedBy]));
}

export class SessionModel {
  constructor(sessionId) {
    this.sessionId = sessionId;
    this.events = []; // sorted by id
    this.seen = new Set();
    /** Newest id received in log order (`event` frames): where a reconnect resumes. */
    this.cursor = 0;
    this.status = "active";
    this.statusAt = 0;
    this.name = "";
    this.project = "";
    this.handshakeMode = "";
    this.participants = new Map();
    this.handshake = { state: "idle", at: 0 };
    this.reports = new Map(); // kind → latest report
    this.reportHistory = [];
    this.contextChanges = new Map(); // path → {at, by, id}
    this.roleRequests = new Map(); // requestId → {aiId, role, reason, at}
    this.lastActivity = null;
    /** The `lastEventId` of the newest seed: events up to it are already in the seed. */
    this.seededAt = 0;
  }

  /**
   * Takes the session as `session_get` answers (`GET /mcp/session/{id}`): name, status,
   * participants and roles, the handshake, open role requests, as of its `lastEventId`. It
   * counts as that event: older events (the replay) do not override it, newer ones fold on top.
   * It is read before the events after it arrive (app.js reads it, then subscribes). Returns the
   * names of the views it changed.
   */
  seed(view) {
    const at = view.lastEventId ?? 0;
    this.seededAt = Math.max(this.seededAt, at);
    this.name = view.name || this.name;
    this.project = view.project || this.project;
    this.handshakeMode = view.handshakeMode || this.handshakeMode;
    if (at >= this.statusAt) {
      this.status = view.status;
      this.statusAt = at;
    }
    for (const p of view.participants || []) this.setMember(p.aiId, p.role, at, !p.leftAt);
    const hs = view.coordination?.handshake;
    if (hs && at >= this.handshake.at) {
      const same = hs.id != null && hs.id === this.handshake.id ? this.handshake : {};
      this.handshake = { ...same, state: hs.state, id: hs.id, driver: hs.driver, reviewer: hs.reviewer, since: hs.since, at };
    }
    const open = view.coordination?.roleRequests || [];
    for (const id of this.roleRequests.keys()) if (id <= at && !open.some((r) => r.id === id)) this.roleRequests.delete(id);
    for (const r of open) this.roleRequests.set(r.id, { at: this.roleRequests.get(r.id)?.at, ...r });
    return ["overview", "people", "handshake"];
  }

  participant(aiId) {
    let p = this.participants.get(aiId);
    if (!p) {
      p = { aiId, role: "observer", roleAt: 0, active: true, memberAt: 0, presence: null, lastAction: null, checkpoint: null, metrics: emptyMetrics() };
      this.participants.set(aiId, p);
    }
    return p;
  }

  get driver() {
    for (const p of this.participants.values()) if (p.active && p.role === "driver") return p.aiId;
    return null;
  }

  /**
   * Takes one event frame. `inOrder` is false for `interrupt` frames. Returns the names of the
   * views it changed (empty when the event was seen before).
   */
  apply(ev, inOrder = true) {
    if (inOrder && ev.id > this.cursor) this.cursor = ev.id;
    if (this.seen.has(ev.id)) return [];
    this.seen.add(ev.id);
    const entry = { id: ev.id, at: ev.at, kind: ev.kind, priority: ev.priority || "routine", actor: ev.actor || null, to: ev.to || null, payload: ev.payload || {}, category: category(ev.kind) };
    entry.text = describe(ev.kind, entry.payload, entry.to);
    insertSorted(this.events, entry);
    if (!this.lastActivity || ev.at > this.lastActivity) this.lastActivity = ev.at;
    return this.fold(entry);
  }

  fold(e) {
    const p = e.payload;
    const changed = new Set(["timeline", "overview"]);
    if (e.actor && e.kind !== "presence_changed") {
      const who = this.participant(e.actor);
      if (!who.lastAction || e.id > who.lastAction.id) who.lastAction = { id: e.id, at: e.at, text: e.text, kind: e.kind };
      changed.add("people");
    }
    switch (e.kind) {
      case "session_created":
        this.name = p.name || this.name;
        this.handshakeMode = p.handshakeMode || this.handshakeMode;
        for (const x of p.participants || []) this.setMember(x.aiId, x.role, e.id, true);
        changed.add("people");
        break;
      case "session_status_changed":
        if (e.id >= this.statusAt) {
          this.status = p.to;
          this.statusAt = e.id;
        }
        changed.add("people"); // what a seat may do
        break;
      case "participant_joined":
        if (p.participant) this.setMember(p.participant.aiId, p.participant.role, e.id, true);
        changed.add("people");
        break;
      case "participant_left":
        this.setMember(p.aiId, p.role, e.id, false);
        changed.add("people");
        break;
      case "role_changed":
        for (const c of p.changes || []) {
          const who = this.participant(c.aiId);
          if (e.id > who.roleAt) {
            who.role = c.to;
            who.roleAt = e.id;
          }
        }
        for (const [id, r] of this.roleRequests) if (id < e.id && (p.changes || []).some((c) => c.aiId === r.aiId)) this.roleRequests.delete(id);
        changed.add("people").add("handshake");
        break;
      case "role_requested":
        // One the seed covers is open only if the seed lists it; the event still tells when.
        if (e.id > this.seededAt) this.roleRequests.set(e.id, { id: e.id, aiId: p.aiId, role: p.role, reason: p.reason, at: e.at });
        else if (this.roleRequests.has(e.id)) this.roleRequests.get(e.id).at = e.at;
        changed.add("handshake");
        break;
      case "role_request_refused":
        this.roleRequests.delete(p.requestId);
        changed.add("handshake");
        break;
      case "presence_changed": {
        const who = this.participant(p.aiId);
        if (!who.presence || e.id > who.presence.id) who.presence = { id: e.id, state: p.state, lastSeen: p.lastSeen || e.at };
        changed.add("people");
        break;
      }
      case "checkpoint_begun": case "checkpoint_ended": {
        const who = this.participant(p.aiId || e.actor);
        if (!who.checkpoint || e.id > who.checkpoint.id) {
          who.checkpoint = e.kind === "checkpoint_begun" ? { id: e.id, task: p.task, endsBy: p.endsBy, interruptible: p.interruptible, open: true } : { id: e.id, open: false };
        }
        changed.add("people");
        break;
      }
      case "handshake": case "control_passed":
        this.foldHandshake(e);
        changed.add("handshake");
        break;
      case "status_reported": {
        const report = { id: e.id, kind: p.kind, status: p.status, summary: p.summary, recovered: p.recovered, by: e.actor, at: e.at };
        const latest = this.reports.get(p.kind);
        if (!latest || e.id > latest.id) this.reports.set(p.kind, report);
        insertSorted(this.reportHistory, report);
        changed.add("reports");
        break;
      }
      default:
        break;
    }
    // Context paths written by this event (context writes, status reports, discoveries, notes).
    if (Array.isArray(p.changes) && category(e.kind) !== "role") {
      for (const c of p.changes) {
        if (typeof c?.path !== "string") continue;
        const before = this.contextChanges.get(c.path);
        if (!before || e.id > before.id) this.contextChanges.set(c.path, { id: e.id, at: e.at, by: e.actor });
      }
      changed.add("context");
    }
    this.count(e);
    return [...changed];
  }

  setMember(aiId, role, id, active) {
    if (!aiId) return;
    const who = this.participant(aiId);
    if (id >= who.memberAt) {
      who.active = active;
      who.memberAt = id;
    }
    if (role && id > who.roleAt) {
      who.role = role;
      who.roleAt = id;
    }
  }

  foldHandshake(e) {
    const p = e.payload;
    const h = this.handshake;
    if (e.id <= h.at) {
      // Older than the state held (a seed, or a later step): only details. Of the open
      // handshake; or, when none is open, of the step that closed the last one.
      if (e.kind !== "handshake") return;
      if (h.id != null) {
        if (p.step === "work_complete" && e.id === h.id) Object.assign(h, { changes: p.changes || [], message: p.message });
        if (p.step === "review_complete" && p.handshakeId === h.id) h.feedback = p.feedback;
      } else if (h.state === "idle" && e.id > (h.closedBy || 0) && (p.step === "control_received" || p.step === "cancel")) {
        Object.assign(h, { closedBy: e.id, lastStep: p.step, nextAction: p.nextAction, reason: p.reason });
      }
      return;
    }
    const base = { at: e.id, atTime: e.at };
    if (e.kind === "control_passed") {
      this.handshake = { ...h, ...base, state: "control_passed", id: p.handshakeId ?? h.id, reviewer: p.by ?? h.reviewer, approved: p.approved };
      return;
    }
    switch (p.step) {
      case "work_complete":
        this.handshake = p.needsReview === false
          ? { ...base, state: "idle", lastStep: "work_complete" }
          : { ...base, state: "awaiting_review", id: e.id, driver: e.actor, since: e.at, changes: p.changes || [], message: p.message };
        break;
      case "review_start":
        this.handshake = { ...h, ...base, state: "reviewing", id: p.handshakeId ?? h.id, reviewer: p.reviewer || e.actor, since: e.at };
        break;
      case "review_complete":
        this.handshake = { ...h, ...base, state: p.passControl ? "control_passed" : "reviewed", feedback: p.feedback, reviewer: h.reviewer || e.actor };
        break;
      case "control_received":
        this.handshake = { ...base, state: "idle", lastStep: "control_received", nextAction: p.nextAction };
        break;
      case "cancel":
        this.handshake = { ...base, state: "idle", lastStep: "cancel", reason: p.reason };
        break;
      default:
        // A step this page does not know (a newer hub): keep the state, show the event.
        this.handshake = { ...h, ...base };
    }
  }

  /** Per-AI counters; what they mean is in the README ("Dashboard"). */
  count(e) {
    const p = e.payload;
    const m = (aiId) => (aiId ? this.participant(aiId).metrics : null);
    switch (e.kind) {
      case "message_sent": { const x = m(e.actor); if (x) x.messages += 1; break; }
      case "task_handed_off": { const x = m(e.actor); if (x) x.handoffs += 1; break; }
      case "handshake":
        if (p.step === "review_complete") { const x = m(e.actor); if (x) x.reviews += 1; }
        if (p.step === "work_complete" && p.needsReview !== false) { const x = m(e.actor); if (x) x.handoffs += 1; }
        break;
      case "change_conflict": { const x = m(e.to); if (x) x.conflicts += 1; break; }
      case "task_status_changed":
        if (p.to === "completed") { const x = m(p.assignedTo || e.actor); if (x) x.tasksCompleted += 1; }
        break;
      case "change_recorded": { const x = m(e.actor); if (x) x.changes += 1; break; }
      case "resource_locked": { const x = m(p.by || e.actor); if (x) x.locks += 1; break; }
      default: break;
    }
  }

  /** Context paths changed within the last five minutes: path → {at, by}. */
  recentPaths(now = Date.now()) {
    const out = new Map();
    for (const [path, c] of this.contextChanges) if (now - Date.parse(c.at) < RECENT_MS) out.set(path, c);
    return out;
  }

  /** The open role requests addressed to the driver. */
  openRoleRequests() {
    return [...this.roleRequests.values()];
  }
}

function insertSorted(array, item) {
  let i = array.length;
  while (i > 0 && array[i - 1].id > item.id) i -= 1;
  array.splice(i, 0, item);
}
