// The dashboard's event fold (static/model.js) without a browser: node --test model.test.mjs.
// Run by tests/api/dashboard.rs.

import { test } from "node:test";
import assert from "node:assert/strict";
import { SessionModel, describe, category, recipientsOf, receiptRows, receiptsSignature } from "../../static/model.js";

let at = Date.parse("2026-12-01T10:00:00Z");
function ev(id, kind, actor, payload = {}, extra = {}) {
  at += 1000;
  return { type: "event", id, kind, actor, priority: "routine", at: new Date(at).toISOString(), payload, ...extra };
}

const log = [
  ev(1, "session_created", null, { name: "Demo", handshakeMode: "strict", participants: [{ aiId: "claude", role: "driver" }, { aiId: "gemini", role: "navigator" }] }),
  ev(2, "message_sent", "claude", { body: "hello", to: null }),
  ev(3, "resource_locked", "claude", { lockId: 3, by: "claude", resource: "/src/a.rs", mode: "exclusive", until: "2026-12-01T10:10:00Z" }),
  ev(4, "handshake", "claude", { step: "work_complete", needsReview: true, changes: ["/src/a.rs"] }, { priority: "important" }),
  ev(5, "handshake", "gemini", { step: "review_start", handshakeId: 4, reviewer: "gemini" }),
  ev(6, "handshake", "gemini", { step: "review_complete", handshakeId: 4, passControl: true, feedback: { approved: true } }),
  ev(7, "control_passed", null, { handshakeId: 4, by: "gemini", approved: true }, { priority: "critical", to: "claude" }),
  ev(8, "presence_changed", null, { aiId: "gemini", state: "connected", lastSeen: "2026-12-01T10:00:08Z" }),
  ev(9, "handshake", "claude", { step: "control_received", handshakeId: 4 }),
  ev(10, "task_created", "claude", { task: { description: "Refactor", assignedTo: "gemini", status: "pending" } }),
  ev(11, "task_status_changed", "gemini", { taskId: 10, from: "pending", to: "blocked", reason: "API", assignedTo: "gemini" }, { priority: "important" }),
  ev(12, "role_changed", "claude", { changes: [{ aiId: "claude", from: "driver", to: "navigator" }, { aiId: "gemini", from: "navigator", to: "driver" }] }),
  ev(13, "resource_released", "gemini", { lockId: 3, by: "claude", reason: "forced", resource: "/src/a.rs" }),
  ev(14, "lock_force_released", null, { lockId: 3, by: "gemini", resource: "/src/a.rs", summary: "your lock on /src/a.rs was force-released by gemini" }, { priority: "critical", to: "claude" }),
  ev(15, "status_reported", "claude", { kind: "test", status: "fail", summary: "2 failing", changes: [{ path: "monitoring.test", new: {} }] }, { priority: "critical" }),
  ev(16, "change_conflict", null, { filePath: "/src/a.rs", summary: "overlap" }, { priority: "critical", to: "gemini" }),
  ev(17, "task_status_changed", "gemini", { taskId: 10, from: "blocked", to: "completed", assignedTo: "gemini" }),
];

function folded(order, interrupts = []) {
  const m = new SessionModel("s");
  for (const e of order) m.apply(e, !interrupts.includes(e.id));
  return m;
}

function state(m) {
  return {
    events: m.events.map((e) => e.id),
    handshake: m.handshake.state,
    driver: m.driver,
    roles: Object.fromEntries([...m.participants].map(([k, p]) => [k, p.role])),
    presence: m.participants.get("gemini").presence?.state,
    metrics: Object.fromEntries([...m.participants].map(([k, p]) => [k, p.metrics])),
    reports: [...m.reports.values()].map((r) => `${r.kind}:${r.status}`),
  };
}

test("the fold of the log in order", () => {
  const m = folded(log);
  assert.equal(m.cursor, 17);
  assert.equal(m.name, "Demo");
  const s = state(m);
  assert.equal(s.handshake, "idle");
  assert.equal(s.driver, "gemini");
  assert.deepEqual(s.roles, { claude: "navigator", gemini: "driver" });
  assert.equal(s.presence, "connected");
  assert.equal(s.metrics.claude.messages, 1);
  assert.equal(s.metrics.claude.handoffs, 1, "work sent for review");
  assert.equal(s.metrics.gemini.reviews, 1);
  assert.equal(s.metrics.gemini.conflicts, 1, "the conflict alert addressed to gemini");
  assert.equal(s.metrics.gemini.tasksCompleted, 1);
  assert.deepEqual(s.reports, ["test:fail"]);
  assert.ok(m.recentPaths(Date.parse("2026-12-01T10:01:00Z")).has("monitoring.test"));
});

test("critical events arriving ahead as interrupts give the same view, and the cursor only follows log order", () => {
  const critical = log.filter((e) => e.priority === "critical");
  const rest = log.filter((e) => e.priority !== "critical");
  const m = new SessionModel("s");
  for (const e of critical) m.apply({ ...e, type: "interrupt" }, false);
  assert.equal(m.cursor, 0, "interrupts do not move the resume cursor");
  for (const e of rest) m.apply(e, true);
  assert.deepEqual(state(m), state(folded(log)));
  assert.equal(m.cursor, 17);
});

test("a replay after a reconnect adds nothing twice", () => {
  const m = folded(log.slice(0, 9));
  const before = m.events.length;
  for (const e of log) m.apply(e, true); // since: 0 again, as after a resync
  assert.equal(m.events.length, log.length);
  assert.ok(m.events.length > before);
  assert.equal(new Set(m.events.map((e) => e.id)).size, m.events.length);
  assert.deepEqual(state(m), state(folded(log)));
});

test("the handshake follows its steps", () => {
  const m = new SessionModel("s");
  const steps = [];
  for (const e of log.slice(0, 9)) {
    m.apply(e);
    steps.push(m.handshake.state);
  }
  assert.deepEqual(steps.slice(3), ["awaiting_review", "reviewing", "control_passed", "control_passed", "control_passed", "idle"]);
});

test("every event has a line of text and a category", () => {
  for (const e of log) {
    assert.ok(describe(e.kind, e.payload, e.to).length > 0, e.kind);
    assert.ok(category(e.kind), e.kind);
  }
  assert.equal(describe("something_new", { summary: "from a newer hub" }), "something new: from a newer hub");
  assert.equal(category("something_new"), "other");
  assert.equal(describe("message_sent", { body: { json: true }, to: "gemini" }), 'to gemini: {"json":true}');
});

// The session as session_get answers at event 9: claude had handed the wheel to gemini and a
// new handshake (#8) waits for review; the log the page replays says nothing of it (retention
// dropped those events, say).
const seed = {
  sessionId: "s", name: "Demo", project: "demo", status: "paused", handshakeMode: "strict", lastEventId: 9,
  participants: [{ aiId: "claude", role: "navigator" }, { aiId: "gemini", role: "driver" }, { aiId: "codex", role: "observer", leftAt: "2026-12-01T10:00:05Z" }],
  coordination: { handshake: { state: "awaiting_review", id: 8, driver: "gemini", since: "2026-12-01T10:00:08Z" }, roleRequests: [{ id: 7, aiId: "claude", role: "driver", reason: "my turn" }] },
};

test("the seed from session_get wins over older events, before or after it, and newer ones fold on top", () => {
  const older = log.slice(0, 9); // ids 1..9: their state is in the seed
  const newer = [
    ev(18, "role_request_refused", "gemini", { requestId: 7, aiId: "claude", role: "driver" }),
    ev(19, "session_status_changed", "gemini", { from: "paused", to: "active" }),
  ];
  const replayed = [...older].reverse(); // any order: interrupts come ahead
  for (const order of [[seed, ...older, ...newer], [...older, seed, ...newer], [...replayed.slice(0, 4), seed, ...replayed.slice(4), ...newer]]) {
    const m = new SessionModel("s");
    for (const x of order) (x === seed ? m.seed(x) : m.apply(x));
    assert.equal(m.driver, "gemini");
    assert.equal(m.participants.get("claude").role, "navigator");
    assert.equal(m.participants.get("codex").active, false);
    assert.equal(m.handshake.state, "awaiting_review");
    assert.equal(m.handshake.id, 8);
    assert.equal(m.status, "active", "the newer status change folds on top");
    assert.deepEqual(m.openRoleRequests(), [], "the newer refusal closes the seeded request");
    assert.equal(m.project, "demo");
    assert.equal(m.events.length, older.length + newer.length, "every event is still in the timeline");
  }
  const m = new SessionModel("s");
  m.seed(seed);
  assert.deepEqual(m.openRoleRequests().map((r) => r.id), [7]);
  m.apply(ev(8, "handshake", "gemini", { step: "work_complete", needsReview: true, changes: ["/src/b.rs"], message: "ready" }));
  assert.deepEqual([m.handshake.state, m.handshake.changes, m.handshake.message], ["awaiting_review", ["/src/b.rs"], "ready"], "an older event adds the open handshake's details");

  // Seeded idle after a handshake that closed with control_received: the replay tells what next.
  const idle = new SessionModel("s");
  idle.seed({ ...seed, lastEventId: 17, coordination: { handshake: { state: "idle" }, roleRequests: [] } });
  for (const e of log) idle.apply(e);
  idle.apply(ev(9, "handshake", "claude", { step: "control_received", handshakeId: 4, nextAction: "fix the review" }));
  assert.deepEqual([idle.handshake.state, idle.handshake.lastStep, idle.handshake.nextAction], ["idle", "control_received", undefined], "event 9 was seen already");
  const again = new SessionModel("s");
  again.seed({ ...seed, lastEventId: 17, coordination: { handshake: { state: "idle" }, roleRequests: [] } });
  again.apply(ev(9, "handshake", "claude", { step: "control_received", handshakeId: 4, nextAction: "fix the review" }));
  again.apply(ev(5, "handshake", "gemini", { step: "cancel", handshakeId: 3, reason: "older" }));
  assert.deepEqual([again.handshake.state, again.handshake.lastStep, again.handshake.nextAction], ["idle", "control_received", "fix the review"]);
});

test("receipts per recipient: delivered, shown, read and acked are separate facts", () => {
  const m = folded(log);
  m.apply(ev(18, "participant_joined", null, { participant: { aiId: "cursor", role: "observer" } }));
  m.apply(ev(19, "participant_left", null, { aiId: "gemini", role: "driver" }));
  // A directed message: its recipient only, with nothing yet.
  const directed = { id: 20, from: "claude", to: "gemini", deliveredTo: [], shownTo: [], readBy: [], ackedBy: [] };
  assert.deepEqual(receiptRows(directed, m.participants), [{ aiId: "gemini", delivered: false, shown: null, read: false, acked: false }]);
  // Shown by a hook without a stream receipt still counts as delivered; read is not acked.
  const hooked = { ...directed, shownTo: [{ aiId: "gemini", at: "2026-12-01T10:01:00Z", via: "hook" }], readBy: ["gemini"] };
  assert.deepEqual(receiptRows(hooked, m.participants), [{ aiId: "gemini", delivered: true, shown: { at: "2026-12-01T10:01:00Z", via: "hook" }, read: true, acked: false }]);
  // A broadcast: every active participant but the sender, plus whoever has a receipt (gemini
  // left after reading it).
  const broadcast = { id: 21, from: "claude", deliveredTo: ["gemini"], shownTo: [], readBy: ["gemini"], ackedBy: [] };
  assert.deepEqual(recipientsOf(broadcast, m.participants), ["cursor", "gemini"]);
  assert.deepEqual(receiptRows(broadcast, m.participants).map((r) => [r.aiId, r.delivered, r.read]), [["cursor", false, false], ["gemini", true, true]]);
  // The signature changes with any receipt, and only then.
  const a = receiptsSignature([directed, broadcast]);
  assert.equal(receiptsSignature([{ ...directed }, { ...broadcast }]), a);
  assert.notEqual(receiptsSignature([hooked, broadcast]), a);
});
