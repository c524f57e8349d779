// Renders the dashboard's panels from the app state (app.js). Text only: every value from the
// hub goes through textContent or an attribute (dom.js `h`).

import { h, fill, $, timeAgo, clock, countdown, plain } from "./dom.js";
import { CATEGORIES, receiptRows } from "./model.js";

const STATUS_COLUMNS = [
  ["pending", "Pending"],
  ["in_progress", "In progress"],
  ["blocked", "Blocked"],
  ["completed", "Completed"],
];

const HANDSHAKE_STEPS = [
  ["idle", "Driver working"],
  ["awaiting_review", "Awaiting review"],
  ["reviewing", "Reviewing"],
  ["reviewed", "Reviewed"],
  ["control_passed", "Control passed back"],
];

const TIMELINE_PAGE = 200;

function badge(text, kind) {
  return h("span", { class: `badge ${kind || ""}` }, text);
}

function roleBadge(role) {
  return badge(role, `role-${role}`);
}

function who(app, aiId) {
  if (!aiId) return "hub";
  return app.seat && app.seat.aiId === aiId ? `${aiId} (you)` : aiId;
}

function seated(app) {
  return Boolean(app.seat && app.seat.authed);
}

/** Seated in a session that still takes writes (a completed one takes none). */
export function acting(app) {
  return seated(app) && app.model?.status !== "completed";
}

function myRole(app) {
  if (!seated(app)) return null;
  return app.model?.participants.get(app.seat.aiId)?.role || app.seat.role || null;
}

/** A button that runs an action; it is disabled while the action runs. */
export function actionButton(label, key, run, opts = {}) {
  const button = h("button", { type: "button", class: opts.class, dataset: { key }, title: opts.title, "aria-label": opts.ariaLabel }, label);
  button.addEventListener("click", async () => {
    if (button.disabled) return;
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    try {
      await run();
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  });
  return button;
}

// ---------------------------------------------------------------- overview

export function renderOverview(app) {
  const m = app.model;
  const summary = app.sessions.find((x) => x.sessionId === m.sessionId);
  const name = m.name || summary?.name || m.sessionId;
  document.title = `${m.status === "active" ? "" : `(${m.status}) `}${name} · collab-hub`;
  const hs = m.handshake;
  const stepLabel = HANDSHAKE_STEPS.find(([k]) => k === hs.state)?.[1] || hs.state;
  const people = [...m.participants.values()].filter((p) => p.active);
  const online = people.filter((p) => p.presence?.state === "connected").length;
  fill(
    $("#overview-body"),
    h("p", { class: "session-name" }, h("strong", { id: "session-name" }, name),
      " ", h("span", { id: "session-status", class: `status status-${m.status}` }, m.status)),
    h("dl", { class: "facts" },
      fact("Project", m.project || summary?.project || "—"),
      fact("Driver", h("span", { id: "driver" }, m.driver ? who(app, m.driver) : "nobody")),
      fact("Handshake", h("span", { id: "handshake-state", dataset: { state: hs.state } }, stepLabel)),
      fact("Mode", m.handshakeMode || "—"),
      fact("People", `${people.length} (${online} streaming)`),
      fact("Events", h("span", { id: "event-count" }, String(m.events.length))),
      fact("Last activity", m.lastActivity ? timeAgo(m.lastActivity) : "—")),
  );
  const controls = [];
  if (m.status === "completed") {
    controls.push(h("p", { class: "muted small" }, "Completed: nobody can write here any more; everything stays readable."));
  } else if (seated(app)) {
    if (m.status === "active") controls.push(actionButton("Pause session", "pause", () => app.act.status("pause")));
    if (m.status === "paused") controls.push(actionButton("Resume session", "resume", () => app.act.status("resume"), { class: "primary" }));
    if (app.ui.confirmComplete) {
      controls.push(h("span", { class: "confirm" }, "Complete for good? Nobody can write afterwards. ",
        actionButton("Yes, complete it", "complete-yes", () => app.act.status("complete"), { class: "danger" }),
        " ",
        h("button", { type: "button", dataset: { key: "complete-no" }, onclick: () => app.act.confirmComplete(false) }, "Keep it open")));
    } else {
      controls.push(h("button", { type: "button", dataset: { key: "complete" }, onclick: () => app.act.confirmComplete(true) }, "Complete session…"));
    }
  } else {
    controls.push(h("p", { class: "muted small" }, "Watching as a viewer. Take a seat to steer."));
  }
  fill($("#session-controls"), controls);
}

function fact(label, value) {
  return h("div", null, h("dt", null, label), h("dd", null, value));
}

// ---------------------------------------------------------------- seat

export function renderSeat(app) {
  const form = $("#seat-form");
  const info = $("#seat-info");
  const completed = app.model?.status === "completed";
  if (app.seat) {
    form.hidden = true;
    const role = myRole(app);
    const p = app.model?.participants.get(app.seat.aiId);
    fill(info,
      h("p", { id: "seat-who" }, "You are ", h("strong", null, app.seat.aiId), " ",
        role ? roleBadge(role) : "", app.seat.authed ? "" : h("span", { class: "muted" }, " (signing in…)")),
      p && !p.active ? h("p", { class: "warn" }, "You left this session; sign out to take a new seat.") : null,
      h("div", { class: "row" },
        acting(app) && role && role !== "driver" && hasOpenRoleRequest(app) === false
          ? actionButton("Ask to drive", "ask-drive", () => app.act.requestRole("driver"), { title: "Ask the driver (or the session) for the driver role" })
          : null,
        h("button", { type: "button", dataset: { key: "sign-out" }, onclick: () => app.act.signOut() }, "Sign out")));
  } else {
    form.hidden = completed;
    fill(info, completed ? h("p", { class: "muted" }, "This session is completed: there is no seat to take.") : null);
  }
}

function hasOpenRoleRequest(app) {
  return app.model.openRoleRequests().some((r) => r.aiId === app.seat?.aiId);
}

// ---------------------------------------------------------------- participants

export function renderPeople(app) {
  const m = app.model;
  const rows = [...m.participants.values()].sort((a, b) => Number(b.active) - Number(a.active) || rank(a.role) - rank(b.role) || a.aiId.localeCompare(b.aiId));
  if (rows.length === 0) return fill($("#people-body"), h("p", { class: "muted" }, "Nobody has joined yet."));
  fill($("#people-body"), h("ul", { class: "people-list" }, rows.map((p) => {
    const presence = p.active ? p.presence?.state || "unknown" : "left";
    const cp = p.checkpoint?.open ? p.checkpoint : null;
    return h("li", { class: `person presence-${presence}${p.active ? "" : " gone"}`, dataset: { ai: p.aiId } },
      h("span", { class: "dot", title: presence, "aria-hidden": "true" }),
      h("div", { class: "person-main" },
        h("div", { class: "person-line" },
          h("strong", { class: "ai" }, who(app, p.aiId)), " ", roleBadge(p.role),
          h("span", { class: "presence muted small" }, " ", presence === "unknown" ? "no stream yet" : presence,
            p.presence?.lastSeen && presence !== "connected" ? [" · seen ", timeAgo(p.presence.lastSeen)] : "")),
        cp ? h("div", { class: "activity focus" }, "Focus: ", cp.task || "checkpoint", cp.interruptible === false ? " (do not disturb)" : "",
          cp.endsBy ? [" · ends ", timeAgo(cp.endsBy)] : "") : null,
        p.lastAction ? h("div", { class: "activity muted small" }, p.lastAction.text, " · ", timeAgo(p.lastAction.at)) : null));
  })));
}

function rank(role) {
  return { driver: 0, navigator: 1, observer: 2 }[role] ?? 3;
}

// ---------------------------------------------------------------- handshake

export function renderHandshake(app) {
  const m = app.model;
  const hs = m.handshake;
  fill($("#handshake-body"),
    h("ol", { class: "stepper", "aria-label": "Handshake steps" }, HANDSHAKE_STEPS.map(([key, label]) =>
      h("li", { class: key === hs.state ? "current" : "", "aria-current": key === hs.state ? "step" : null }, label))),
    hs.state !== "idle" ? h("dl", { class: "facts" },
      hs.id != null ? fact("Handshake", `#${hs.id}`) : null,
      hs.driver ? fact("Driver", who(app, hs.driver)) : null,
      hs.reviewer ? fact("Reviewer", who(app, hs.reviewer)) : null,
      hs.since ? fact("Since", timeAgo(hs.since)) : null,
      hs.changes?.length ? fact("Changes", hs.changes.join(", ")) : null,
      hs.message ? fact("Note", hs.message) : null,
      hs.feedback ? fact("Review", `${hs.feedback.approved ? "approved" : "changes requested"}${[...(hs.feedback.suggestions || []), ...(hs.feedback.issues || [])].length ? ": " + [...(hs.feedback.suggestions || []), ...(hs.feedback.issues || [])].join("; ") : ""}`) : null)
      : h("p", { class: "muted" }, m.driver ? `${who(app, m.driver)} has control.` : "Nobody drives yet.",
        hs.lastStep === "control_received" && hs.nextAction ? ` Next: ${hs.nextAction}` : ""),
    m.openRoleRequests().length ? h("div", { class: "requests" }, h("h3", null, "Role requests"),
      h("ul", null, m.openRoleRequests().map((r) => h("li", null, `${who(app, r.aiId)} asks to become ${r.role}`, r.reason ? `: ${r.reason}` : "", " · ", timeAgo(r.at),
        acting(app) && myRole(app) === "driver" ? [" ",
          actionButton("Grant", `grant-${r.id}`, () => app.act.respondRole(r.id, true), { class: "primary" }), " ",
          actionButton("Refuse", `refuse-${r.id}`, () => app.act.respondRole(r.id, false))] : null)))) : null,
  );

  const controls = [];
  if (acting(app)) {
    const me = app.seat.aiId;
    const role = myRole(app);
    if ((hs.state === "awaiting_review" && role === "navigator") || ((hs.state === "reviewing" || hs.state === "reviewed") && hs.reviewer === me)) {
      controls.push(
        h("label", { class: "grow" }, hs.state === "awaiting_review" ? "Review notes (one per line, optional)" : "Review notes (one per line)",
          h("textarea", { id: "review-notes", rows: 2, dataset: { key: "review-notes" }, value: app.ui.reviewNotes, oninput: (e) => { app.ui.reviewNotes = e.target.value; } })),
        h("div", { class: "row" },
          hs.state === "awaiting_review" ? actionButton("Start review", "review-start", () => app.act.reviewStart()) : null,
          actionButton("Approve", "approve", () => app.act.reviewComplete(true), { class: "primary", title: "Approve and hand control back to the driver" }),
          actionButton("Request changes", "request-changes", () => app.act.reviewComplete(false), { title: "Hand control back with the issues listed" })));
    }
    if (role === "driver") {
      if (hs.state === "idle") {
        controls.push(h("div", { class: "row" },
          actionButton("Finish work, ask for review", "work-complete", () => app.act.workComplete())));
        const others = [...m.participants.values()].filter((p) => p.active && p.aiId !== me && p.role !== "observer");
        if (others.length) {
          controls.push(h("div", { class: "row" },
            h("label", null, "Pass control to",
              h("select", { id: "pass-to", dataset: { key: "pass-to" }, onchange: (e) => { app.ui.passTo = e.target.value; } },
                others.map((p) => h("option", { value: p.aiId, selected: p.aiId === app.ui.passTo }, p.aiId)))),
            actionButton("Pass control", "pass-control", () => app.act.passControl($("#pass-to").value))));
        }
      }
      if (hs.state === "awaiting_review" || hs.state === "reviewing") controls.push(h("div", { class: "row" }, actionButton("Cancel handshake", "hs-cancel", () => app.act.handshakeCancel())));
      if (hs.state === "control_passed") controls.push(h("div", { class: "row" }, actionButton("Take control back", "control-received", () => app.act.controlReceived(), { class: "primary" })));
    }
  }
  fill($("#handshake-controls"), controls);
}

// ---------------------------------------------------------------- timeline

export function setupTimelineFilters(app) {
  const kind = $("#filter-kind");
  fill(kind,
    h("option", { value: "conversation" }, "Messages & handshakes"),
    h("option", { value: "" }, "All events"),
    CATEGORIES.map(([value, label]) => h("option", { value }, label)));
  kind.value = app.filters.kind;
}

export function renderPeopleOptions(app) {
  const names = [...app.model.participants.values()].map((p) => p.aiId).sort();
  for (const [select, first] of [[$("#filter-ai"), "Everyone"], [$("#msg-to"), "Everyone"]]) {
    const current = select.value;
    fill(select, h("option", { value: "" }, first), names.filter((n) => select.id !== "msg-to" || n !== app.seat?.aiId).map((n) => h("option", { value: n }, n)));
    select.value = names.includes(current) ? current : "";
  }
  const brief = $("#briefing-for");
  const current = brief.value;
  const active = [...app.model.participants.values()].filter((p) => p.active).map((p) => p.aiId).sort();
  fill(brief, active.map((n) => h("option", { value: n }, n)));
  if (active.includes(current)) brief.value = current;
  $("#briefing-for-label").hidden = seated(app);
}

function matches(app, e) {
  const f = app.filters;
  if (f.kind === "conversation" && e.category !== "message" && e.category !== "handshake") return false;
  if (f.kind && f.kind !== "conversation" && e.category !== f.kind) return false;
  if (f.priority && e.priority !== f.priority) return false;
  if (f.ai && e.actor !== f.ai && e.to !== f.ai && e.payload?.aiId !== f.ai) return false;
  return true;
}

export function renderTimeline(app) {
  const all = app.model.events;
  const shown = [];
  let total = 0;
  for (let i = all.length - 1; i >= 0; i -= 1) {
    if (!matches(app, all[i])) continue;
    total += 1;
    if (shown.length < app.ui.timelineLimit) shown.push(all[i]);
  }
  $("#timeline-count").textContent = total === all.length
    ? `${total} event${total === 1 ? "" : "s"}`
    : `${total} of ${all.length} events match`;
  const acks = ackTimes(all);
  fill($("#timeline-list"), shown.length ? shown.map((e) => timelineItem(app, e, acks)) : h("li", { class: "muted empty-row" }, "Nothing matches these filters yet."));
  $("#timeline-more").hidden = total <= shown.length;
}

function timelineItem(app, e, acks) {
  const detail = e.kind === "message_sent" && typeof e.payload.body !== "string" ? JSON.stringify(e.payload.body, null, 2) : null;
  return h("li", { class: `event cat-${e.category} prio-${e.priority}`, dataset: { id: String(e.id), kind: e.kind } },
    h("div", { class: "event-meta" },
      h("time", { datetime: e.at, title: new Date(e.at).toLocaleString() }, clock(e.at)),
      " ", h("span", { class: "who" }, who(app, e.actor)),
      e.to ? h("span", { class: "to" }, " → ", who(app, e.to)) : null,
      " ", badge(e.kind.replaceAll("_", " "), `kind cat-${e.category}`),
      e.priority !== "routine" ? [" ", badge(e.priority, `prio prio-${e.priority}`)] : null,
      h("span", { class: "event-id muted small" }, ` #${e.id}`)),
    h("p", { class: "event-text" }, e.text),
    detail ? h("pre", { class: "event-detail" }, detail) : null,
    e.kind === "message_sent" ? receipts(app, e, acks) : null);
}

// ---------------------------------------------------------------- receipts

const SHOWN_VIA = {
  digest: "listed in full in the digest of one of its tool results",
  hook: "printed into its context by its client's hook",
  briefing: "listed in its resume briefing",
  channel: "sent as a channel notification",
};

/** When each acknowledgement of an ack-required message was told to its sender (`message_acked`). */
function ackTimes(events) {
  const out = new Map();
  for (const e of events) {
    if (e.kind !== "message_acked" || !Array.isArray(e.payload?.ids)) continue;
    for (const id of e.payload.ids) {
      const key = `${id} ${e.payload.by}`;
      if (!out.has(key)) out.set(key, e.at);
    }
  }
  return out;
}

function at(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

/**
 * One receipt: a word with an icon that says whether it happened (✓) or not yet (○), not only
 * a colour; the details (what it means, when) as its tooltip.
 */
function receipt(kind, done, label, title, extra = "") {
  return h("span", { class: `receipt ${done ? "yes" : "no"}${extra}`, dataset: { receipt: kind, state: done ? "yes" : "no" }, title },
    h("span", { class: "receipt-icon", "aria-hidden": "true" }, done ? "✓" : "○"),
    done ? null : h("span", { class: "sr-only" }, "not yet "),
    label);
}

function receiptRow(app, message, row, acks) {
  const name = who(app, row.aiId);
  const noticed = (state) => {
    const t = app.receiptsNoticed?.get(`${message.id} ${row.aiId} ${state}`);
    return t ? ` (seen here at ${at(t)})` : "";
  };
  const parts = [
    receipt("delivered", row.delivered, "delivered", row.delivered
      ? `Delivered to ${name}: handed to one of its event streams or returned in one of its tool results${noticed("delivered")}`
      : `Not delivered to ${name} yet`),
    receipt("shown", Boolean(row.shown), row.shown ? `shown (${row.shown.via})` : "shown", row.shown
      ? `Shown to ${name}'s model at ${at(row.shown.at)}: ${SHOWN_VIA[row.shown.via] || row.shown.via}`
      : `Not put before ${name}'s model yet (by a tool result's digest, a hook, a briefing or a channel)`),
    receipt("read", row.read, "read", row.read
      ? `Read: messages_read returned it to ${name}${noticed("read")}`
      : `Not read by ${name} yet (messages_read has not returned it)`),
  ];
  // Acknowledgement is asked for by some messages only; a message acknowledged anyway says so.
  if (message.requiresAck || row.acked) {
    const ackAt = acks.get(`${message.id} ${row.aiId}`);
    const due = message.ackDeadline ? ` by ${at(message.ackDeadline)}` : "";
    parts.push(receipt("acked", row.acked, "acked", row.acked
      ? `Acknowledged by ${name}${ackAt ? ` at ${at(ackAt)}` : noticed("acked")}`
      : `Not acknowledged by ${name} yet${message.requiresAck ? `; asked for${due}` : ""}`,
    !row.acked && message.requiresAck ? " due" : ""));
  }
  const line = [];
  parts.forEach((p, i) => line.push(i ? h("span", { class: "sep", "aria-hidden": "true" }, " · ") : null, p));
  return h("li", { class: "receipt-row", dataset: { ai: row.aiId } }, h("span", { class: "receipt-who" }, name), " ", line);
}

/**
 * A message's receipts per recipient, from the hub's message list (app.receipts, read with
 * `messages_read` as the operator). Up to three recipients show as lines; more fold into a
 * summary that opens.
 */
function receipts(app, e, acks) {
  const message = app.receipts?.get(e.id);
  if (!message) return null;
  const rows = receiptRows(message, app.model.participants);
  if (rows.length === 0) return null;
  const list = h("ul", { class: "receipt-rows", "aria-label": `Receipts of message #${e.id}` }, rows.map((r) => receiptRow(app, message, r, acks)));
  if (rows.length <= 3) return h("div", { class: "receipts" }, list);
  const count = (pick) => `${rows.filter(pick).length}/${rows.length}`;
  const summary = [
    `delivered ${count((r) => r.delivered)}`,
    `shown ${count((r) => r.shown)}`,
    `read ${count((r) => r.read)}`,
    message.requiresAck ? `acked ${count((r) => r.acked)}` : null,
  ].filter(Boolean).join(" · ");
  const open = app.ui.openReceipts?.has(e.id);
  return h("details", { class: "receipts", open, ontoggle: (ev) => {
    app.ui.openReceipts ??= new Set();
    if (ev.target.open) app.ui.openReceipts.add(e.id);
    else app.ui.openReceipts.delete(e.id);
  } },
  h("summary", { dataset: { key: `receipts-${e.id}` } }, `Receipts: ${summary}`),
  list);
}

// ---------------------------------------------------------------- tasks

export function renderTasks(app) {
  const tasks = app.tasks;
  if (!tasks) return fill($("#tasks-body"), h("p", { class: "muted" }, "Loading…"));
  if (tasks.length === 0) return fill($("#tasks-body"), h("p", { class: "muted" }, "No tasks yet."));
  const byId = new Map(tasks.map((t) => [t.id, t]));
  const children = new Map();
  for (const t of tasks) if (t.parent != null) children.set(t.parent, [...(children.get(t.parent) || []), t]);
  const assignable = [...app.model.participants.values()].filter((p) => p.active && p.role !== "observer").map((p) => p.aiId).sort();
  fill($("#tasks-body"), h("div", { class: "columns" }, STATUS_COLUMNS.map(([status, label]) => {
    const mine = tasks.filter((t) => t.status === status);
    return h("section", { class: `column col-${status}`, "aria-label": `${label}: ${mine.length}` },
      h("h3", null, label, " ", h("span", { class: "count" }, String(mine.length))),
      mine.length ? h("ul", { class: "cards" }, mine.map((t) => taskCard(app, t, byId, children, assignable))) : h("p", { class: "muted small" }, "—"));
  })));
}

function taskCard(app, t, byId, children, assignable) {
  const subs = children.get(t.id) || [];
  const done = subs.filter((x) => x.status === "completed").length;
  const parent = t.parent != null ? byId.get(t.parent) : null;
  const controls = [];
  if (acting(app) && t.status !== "completed") {
    if (t.status === "blocked") controls.push(actionButton("Unblock", `unblock-${t.id}`, () => app.act.unblockTask(t.id), { class: "primary", ariaLabel: `Unblock task ${t.id}` }));
    const selectId = `assign-${t.id}`;
    controls.push(h("label", { class: "inline" }, h("span", { class: "sr-only" }, `Assign task ${t.id} to`),
      h("select", { id: selectId, dataset: { key: selectId }, onchange: (e) => app.ui.assign.set(t.id, e.target.value) },
        assignable.map((a) => h("option", { value: a, selected: a === (app.ui.assign.get(t.id) ?? t.assignedTo) }, a)))));
    controls.push(actionButton("Reassign", `reassign-${t.id}`, () => app.act.assignTask(t.id, document.getElementById(selectId).value), { ariaLabel: `Reassign task ${t.id}` }));
  }
  return h("li", { class: `task status-${t.status}`, dataset: { task: String(t.id) } },
    h("div", { class: "task-head" }, h("span", { class: "task-id muted" }, `#${t.id}`), " ", h("span", { class: "task-desc" }, t.description)),
    h("div", { class: "task-meta small" },
      t.assignedTo ? ["for ", h("strong", { class: "assignee" }, who(app, t.assignedTo))] : h("span", { class: "muted" }, "unassigned"),
      t.skills?.length ? ` · skills: ${t.skills.join(", ")}` : ""),
    parent ? h("div", { class: "small muted" }, `↳ part of #${parent.id} ${parent.description}`) : null,
    t.blockedReason && t.status === "blocked" ? h("div", { class: "small blocked-reason" }, "Blocked: ", t.blockedReason) : null,
    t.dependencies?.length ? h("div", { class: "small deps" }, "Needs ", t.dependencies.map((d, i) => {
      const dep = byId.get(d);
      const ok = dep?.status === "completed";
      return [i ? ", " : "", h("span", { class: ok ? "dep done" : "dep open", title: dep ? dep.description : "" }, `#${d}${ok ? " ✓" : ""}`)];
    })) : null,
    subs.length ? h("details", { class: "subtasks small" }, h("summary", null, `Subtasks ${done}/${subs.length} done`),
      h("ul", null, subs.map((x) => h("li", { class: `status-${x.status}` }, `#${x.id} ${x.description} — ${x.status.replace("_", " ")}${x.assignedTo ? ` (${x.assignedTo})` : ""}`)))) : null,
    t.handoff && !t.assignedTo ? h("div", { class: "small handoff" }, `Handed off by ${t.handoff.from || "?"}: `, plain(t.handoff.context?.notes ?? t.handoff.context)) : null,
    controls.length ? h("div", { class: "row task-controls" }, controls) : null);
}

// ---------------------------------------------------------------- locks

export function renderLocks(app) {
  const locks = app.locks;
  if (!locks) return fill($("#locks-body"), h("p", { class: "muted" }, "Loading…"));
  if (locks.length === 0) return fill($("#locks-body"), h("p", { class: "muted" }, "No locks held or waiting in this project."));
  const names = new Map(app.sessions.map((x) => [x.sessionId, x.name]));
  const sid = app.model.sessionId;
  fill($("#locks-body"), h("div", { class: "table-wrap" }, h("table", { class: "locks-table" },
    h("thead", null, h("tr", null, ["Resource", "Holder", "Mode", "State", "Time left", ""].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", null, locks.map((l) => {
      const ours = l.sessionId === sid;
      const stale = l.expiresAt && Date.parse(l.expiresAt) < Date.now();
      return h("tr", { class: `lock state-${l.state}${ours ? "" : " other-session"}`, dataset: { lock: String(l.id), resource: l.resource } },
        h("td", null, h("code", null, l.resource), l.operation ? h("div", { class: "small muted" }, l.operation) : null),
        h("td", null, h("span", { class: "holder" }, ours ? who(app, l.holder) : l.holder),
          ours ? null : h("div", { class: "small muted" }, `in “${names.get(l.sessionId) || l.sessionId}”`)),
        h("td", null, l.mode),
        h("td", null, l.state === "waiting" ? ["waiting", l.behind?.length ? h("div", { class: "small muted" }, `behind ${l.behind.map((b) => `#${b}`).join(", ")}`) : null] : "held"),
        h("td", null, l.expiresAt ? h("span", { class: `countdown${stale ? " stale" : ""}`, dataset: { expires: l.expiresAt } }, countdown(l.expiresAt)) : h("span", { class: "muted" }, `${Math.round((l.leaseSecs || 0) / 60)} min lease once granted`)),
        h("td", null, acting(app) && ours && l.holder !== app.seat.aiId
          ? actionButton(l.state === "waiting" ? "Cancel request" : "Force release", `release-${l.id}`, () => app.act.forceRelease(l), { class: "danger", ariaLabel: `Force release ${l.resource} held by ${l.holder}` })
          : acting(app) && ours && l.holder === app.seat.aiId ? actionButton("Release", `release-${l.id}`, () => app.act.releaseLock(l)) : null));
    })))));
}

// ---------------------------------------------------------------- suggestions

export function renderSuggestions(app) {
  const list = app.suggestions;
  if (!list) return fill($("#suggestions-body"), h("p", { class: "muted" }, "Loading…"));
  const pending = list.filter((x) => x.status === "pending");
  if (pending.length === 0) return fill($("#suggestions-body"), h("p", { class: "muted" }, "No suggestions waiting."));
  fill($("#suggestions-body"), h("ul", { class: "suggestion-list" }, pending.map((sg) => h("li", { class: "suggestion", dataset: { suggestion: String(sg.id) } },
    h("div", null, h("strong", null, who(app, sg.aiId)), " suggests a change to ", h("code", null, sg.filePath), " · ", timeAgo(sg.at)),
    sg.reason ? h("p", { class: "small" }, sg.reason) : null,
    sg.diff ? diffBlock(sg.diff) : null,
    acting(app) ? h("div", { class: "row" },
      h("label", { class: "grow" }, "Note (optional)", h("input", { id: `sg-note-${sg.id}`, dataset: { key: `sg-note-${sg.id}` }, value: app.ui.notes.get(sg.id) || "", oninput: (e) => app.ui.notes.set(sg.id, e.target.value) })),
      actionButton("Accept", `accept-${sg.id}`, () => app.act.resolveSuggestion(sg.id, true), { class: "primary", ariaLabel: `Accept suggestion ${sg.id}` }),
      actionButton("Reject", `reject-${sg.id}`, () => app.act.resolveSuggestion(sg.id, false), { ariaLabel: `Reject suggestion ${sg.id}` })) : null))));
}

function diffBlock(diff) {
  const lines = String(diff).split("\n").slice(0, 200);
  return h("pre", { class: "diff" }, lines.map((l) => h("span", { class: l.startsWith("@@") ? "hunk" : l.startsWith("+") && !l.startsWith("+++") ? "add" : l.startsWith("-") && !l.startsWith("---") ? "del" : "" }, `${l}\n`)));
}

// ---------------------------------------------------------------- status reports

export function renderReports(app) {
  const m = app.model;
  if (m.reports.size === 0) return fill($("#reports-body"), h("p", { class: "muted" }, "No test, build, merge or lint results reported yet."));
  const latest = [...m.reports.values()].sort((a, b) => a.kind.localeCompare(b.kind));
  fill($("#reports-body"),
    h("ul", { class: "tiles" }, latest.map((r) => h("li", { class: `tile ${r.status === "fail" ? "fail" : "pass"}`, dataset: { report: r.kind } },
      h("div", { class: "tile-head" }, h("span", { class: "tile-kind" }, r.kind), " ", badge(r.status === "fail" ? "FAIL" : "PASS", r.status === "fail" ? "bad" : "good"), r.recovered ? " recovered" : ""),
      h("p", { class: "small" }, r.summary),
      h("p", { class: "small muted" }, who(app, r.by), " · ", timeAgo(r.at))))),
    m.reportHistory.length > latest.length ? h("details", { class: "small" }, h("summary", null, `History (${m.reportHistory.length})`),
      h("ol", { class: "history" }, [...m.reportHistory].reverse().slice(0, 50).map((r) => h("li", null, clock(r.at), ` ${r.kind} ${r.status}: ${r.summary} (${r.by || "?"})`)))) : null);
}

// ---------------------------------------------------------------- context

const MAX_CHILDREN = 100;

function escapeKey(key) {
  return key.replaceAll(".", "\\.");
}

export function renderContext(app) {
  const ctx = app.context;
  if (!ctx) return fill($("#context-body"), h("p", { class: "muted" }, "Loading…"));
  const value = ctx.value;
  const empty = value == null || (typeof value === "object" && Object.keys(value).length === 0);
  if (empty) return fill($("#context-body"), h("p", { class: "muted" }, "The shared context is empty."));
  const recent = app.model.recentPaths();
  const hot = (path) => recent.get(path);
  const warm = (path) => {
    for (const p of recent.keys()) if (p.startsWith(`${path}.`) || p.startsWith(`${path}[`)) return true;
    return false;
  };
  const node = (key, val, path, depth) => {
    const changed = hot(path);
    const mark = changed ? h("span", { class: "changed-note small" }, ` changed by ${changed.by || "hub"} `, timeAgo(changed.at)) : null;
    const cls = changed ? "ctx recent" : warm(path) ? "ctx warm" : "ctx";
    if (val !== null && typeof val === "object") {
      const entries = Array.isArray(val) ? val.map((v, i) => [`[${i}]`, v, `${path}[${i}]`]) : Object.entries(val).map(([k, v]) => [k, v, path ? `${path}.${escapeKey(k)}` : escapeKey(k)]);
      const shown = entries.slice(0, MAX_CHILDREN);
      return h("li", { class: cls, dataset: { path } },
        h("details", { open: depth < 2 || changed || warm(path) },
          h("summary", null, h("span", { class: "key" }, key), h("span", { class: "muted small" }, Array.isArray(val) ? ` [${val.length}]` : ` {${entries.length}}`), mark),
          h("ul", null, shown.map(([k, v, p]) => node(k, v, p, depth + 1)),
            entries.length > shown.length ? h("li", { class: "muted small" }, `… ${entries.length - shown.length} more`) : null)));
    }
    const text = typeof val === "string" ? val : JSON.stringify(val);
    return h("li", { class: cls, dataset: { path } }, h("span", { class: "key" }, key), ": ",
      h("span", { class: `val val-${val === null ? "null" : typeof val}` }, text.length > 400 ? `${text.slice(0, 399)}…` : text), mark);
  };
  const entries = typeof value === "object" ? Object.entries(value) : [["(value)", value]];
  fill($("#context-body"),
    h("p", { class: "muted small" }, `Version ${ctx.version ?? "—"}. Keys changed in the last 5 minutes are highlighted.`),
    h("ul", { class: "tree" }, entries.map(([k, v]) => node(k, v, escapeKey(k), 0))));
}

// ---------------------------------------------------------------- metrics

export function renderMetrics(app) {
  const rows = [...app.model.participants.values()].sort((a, b) => a.aiId.localeCompare(b.aiId));
  if (rows.length === 0) return fill($("#metrics-body"), h("p", { class: "muted" }, "No participants yet."));
  const cols = [["messages", "Msgs", "Messages sent"], ["handoffs", "Handoffs", "Task handoffs plus work sent for review"], ["reviews", "Reviews", "Reviews completed"], ["conflicts", "Conflicts", "Change-conflict alerts addressed to this AI"], ["tasksCompleted", "Done", "Tasks assigned to it that were completed"], ["changes", "Changes", "File changes recorded"], ["locks", "Locks", "Locks granted"]];
  fill($("#metrics-body"), h("div", { class: "table-wrap" }, h("table", { class: "metrics-table" },
    h("thead", null, h("tr", null, h("th", { scope: "col" }, "AI"), cols.map(([, label, title]) => h("th", { scope: "col", class: "num", title }, label)))),
    h("tbody", null, rows.map((p) => h("tr", { dataset: { ai: p.aiId } }, h("th", { scope: "row" }, who(app, p.aiId)),
      cols.map(([key]) => h("td", { class: "num", dataset: { metric: key } }, String(p.metrics[key])))))))),
  h("p", { class: "muted small" }, "Counted from this session's events since it began: handoffs are task handoffs plus work sent for review; conflicts are change-conflict alerts addressed to the AI; tasks done are completions of tasks assigned to it."));
}

// ---------------------------------------------------------------- records

export function renderRecords(app) {
  const r = app.records;
  const body = $("#records-body");
  if (!r) return fill(body);
  if (r.kind === "snapshot") {
    return fill(body, h("p", { id: "snapshot-result" }, `Snapshot #${r.value.snapshotId} saved at event #${r.value.eventId} (${formatBytes(r.value.bytes)}${r.value.compressed ? ", compressed" : ""}).`));
  }
  if (r.kind === "export") {
    return fill(body, h("p", { id: "export-result" }, `Exported ${r.format} (${formatBytes(r.bytes)}) as ${r.name}.`));
  }
  if (r.kind === "briefing") {
    const b = r.value.briefing || {};
    return fill(body, h("div", { id: "briefing", class: "briefing" },
      h("h3", null, `Briefing for ${r.value.participant || r.for} (${b.strategy || "?"})`),
      b.summary ? h("p", null, b.summary) : null,
      b.lastActive ? h("p", { class: "small muted" }, `Last active ${b.lastActive}; session ${b.sessionDuration || ""}`) : null,
      section("Alerts", b.alerts, "alerts"),
      section("Suggested next steps", (b.suggestions || []).map((x) => `${x.action} — ${x.reason}`)),
      section("Pending tasks", b.pendingTasks),
      section("In progress", b.inProgress),
      section("Blocked", b.blocked),
      section("Completed", b.completed),
      section("Messages", (b.messages || []).map((x) => (typeof x === "string" ? x : `${x.from || ""}${x.to ? ` → ${x.to}` : ""}: ${plain(x.body ?? x.text ?? x)}`))),
      section("Handoffs", (b.handoffs || []).map((x) => `#${x.taskId} from ${x.from}: ${x.text || ""}`)),
      section("Collaborators", Object.entries(b.collaboratorUpdates || {}).map(([k, v]) => `${k}: ${v.lastAction || ""}${v.actions ? ` (${v.actions.join(", ")})` : ""}`)),
      b.size ? h("p", { class: "small muted" }, `${b.size.tokens} tokens standing for ${b.size.rawEvents} events (${b.size.savedTokens} saved).`) : null));
  }
  return fill(body);
}

function section(title, items, cls) {
  if (!items || items.length === 0) return null;
  return h("div", { class: cls || "" }, h("h4", null, title), h("ul", null, items.map((x) => h("li", null, plain(x)))));
}

function formatBytes(n) {
  if (n == null) return "? bytes";
  if (n < 1024) return `${n} bytes`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}
