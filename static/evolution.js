// The evolution panel: the watched session's collaboration genome (its task type, where it came
// from, each gene's value and what that value sets in this session), its measured outcome and
// fitness once completed, its task type's population (generation, members), the best genome of
// every task type, fitness per generation as a chart (inline SVG built with DOM calls, with a
// table as its text alternative), and the insights the scored sessions of the task type support.
//
// Every read is an `evolution` call on the watch (read-only: a viewer may make it; viewers'
// calls are paced by the hub, so the page reads little): the session's genome once and again
// after it completes until it is scored; the populations on each refresh (app.js: when the
// session completes, every 30 s while the page is visible, and on the panel's button); the
// insights (a permutation test on the hub) only when the population moved, the session was
// scored, or the last read is 5 minutes old. Text only: values reach the page as text nodes and
// attribute values.

import { h, fill, $, timeAgo } from "./dom.js";

/** Insights cost the hub a permutation test: read again at most this often when nothing moved. */
const INSIGHTS_MAX_AGE_MS = 5 * 60 * 1000;

const dur = (secs) => {
  if (secs == null || !Number.isFinite(secs)) return "—";
  if (secs < 60) return `${secs} s`;
  if (secs < 3600) return `${+(secs / 60).toFixed(1)} min`;
  const hrs = Math.floor(secs / 3600);
  const mins = Math.round((secs - hrs * 3600) / 60);
  return mins ? `${hrs} h ${mins} min` : `${hrs} h`;
};

/**
 * The genes in the concept's order: label, unit of the value, and what the value sets in the
 * session (from the hub's `effects`, the settings the session actually runs with).
 */
export const GENES = [
  ["taskAllocation", "Task allocation", "", (e) => `tasks without an assignee go out ${e.taskAllocation === "roundRobin" ? "round robin" : e.taskAllocation === "loadBalanced" ? "load-balanced" : e.taskAllocation === "skillBased" ? "by skill" : e.taskAllocation}`],
  ["parallelWorkThreshold", "Parallel work threshold", "", (e) => `at most ${e.maxTasksInProgress} task${e.maxTasksInProgress === 1 ? "" : "s"} in progress per participant`],
  ["contextSyncFrequency", "Context sync frequency", " min", (e) => `a context-sync reminder every ${dur(e.contextSyncSecs)}`],
  ["messageVerbosity", "Message verbosity", "", (e) => `${e.messageVerbosity} detail in events and digests`],
  ["handshakeStrictness", "Handshake strictness", "", (e) => `${e.handshakeMode} handshake; a review is expected within ${dur(e.reviewTimeoutSecs)}`],
  ["roleRotationInterval", "Role rotation interval", " min", (e) => `the driver role rotates every ${dur(e.rotationIntervalSecs)}`],
  ["navigatorAutonomy", "Navigator autonomy", "", (e) => (e.navigatorLineLimit == null
    ? "navigators may record changes of any size (loose mode)"
    : e.navigatorLineLimit === 0 ? "navigators record no changes themselves (loose mode)"
      : `navigators may record changes of up to ${e.navigatorLineLimit} lines (loose mode)`)],
  ["reviewRequirement", "Review requirement", "", (e) => (e.reviewThreshold
    ? `review is mandatory from ${e.reviewThreshold.files} file${e.reviewThreshold.files === 1 ? "" : "s"} or ${e.reviewThreshold.lines} line${e.reviewThreshold.lines === 1 ? "" : "s"} of unreviewed work`
    : "no amount of unreviewed work makes review mandatory")],
  ["briefingDepth", "Briefing depth", "", (e) => e.resumeStrategy === "byTimeAway" ? "resume briefings by time away (quick under 1 h, standard under a day, else deep)" : `${e.resumeStrategy} resume briefings by default`],
  ["checkpointFrequency", "Checkpoint frequency", " min", (e) => `an automatic snapshot every ${dur(e.saveInterval)}`],
  ["conflictResolution", "Conflict resolution", "", (e) => (e.conflictResolution === "consensus" ? "disputes are settled by a vote of the participants" : `disputes are settled by the ${e.conflictResolution}`)],
];

const MEASURED = [
  ["tasksCompleted", "Tasks completed"],
  ["handoffs", "Handoffs"],
  ["successfulHandoffs", "Handoffs that went well"],
  ["conflictsRaised", "Conflicts raised"],
  ["conflictsResolved", "Conflicts resolved"],
  ["disputes", "Disputes"],
  ["messages", "Messages"],
  ["testsWritten", "Tests written"],
  ["testsPassing", "Tests passing"],
  ["buildFailures", "Build failures"],
  ["errors", "Errors"],
];

/** A gene's value as text: numbers to at most 3 decimals, with their unit. */
export function geneText(value, unit = "") {
  if (typeof value === "number") return `${+value.toFixed(3)}${unit}`;
  return value == null ? "—" : String(value);
}

/** A fitness score as text (one decimal, grouped). */
export function fitnessText(score) {
  if (score == null || !Number.isFinite(score)) return "—";
  return score.toLocaleString("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 });
}

const compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });

/** What the panel holds for one session (app.evolution). */
export function initialEvolution(sessionId) {
  return { sessionId, session: null, populations: null, population: null, insights: null, insightsKey: "", insightsAt: 0, readAt: null, error: null, open: new Set(), drawn: "" };
}

/**
 * Reads what may have changed into `state` over `conn` (the watch). `status` is the session's
 * status as the page knows it; `force` reads everything again (the refresh button). Returns
 * `{scorePending}`: the session is completed but the hub has not scored it yet (it scores
 * completed sessions in the background), so the caller reads again a little later.
 */
export async function readEvolution(conn, state, status, { force = false } = {}) {
  try {
    const scored = () => state.session?.outcome?.fitness != null;
    if (force || !state.session || (status === "completed" && !scored())) {
      state.session = await conn.call("evolution", { action: "session", sessionId: state.sessionId });
    }
    const taskType = state.session.taskType;
    const [all, typed] = await Promise.all([
      conn.call("evolution", { action: "status" }),
      conn.call("evolution", { action: "status", taskType, members: true }),
    ]);
    state.populations = all.populations || [];
    state.population = (typed.populations || []).find((p) => p.taskType === taskType) || null;
    const pop = state.population;
    const key = `${pop ? `${pop.generation}/${pop.scoredThisGeneration}/${pop.history.length}` : "none"}|${scored()}`;
    if (force || !state.insights || key !== state.insightsKey || Date.now() - state.insightsAt > INSIGHTS_MAX_AGE_MS) {
      state.insights = await conn.call("evolution", { action: "insights", taskType });
      state.insightsKey = key;
      state.insightsAt = Date.now();
    }
    state.error = null;
    state.readAt = new Date().toISOString();
    return { scorePending: status === "completed" && !scored() };
  } catch (e) {
    state.error = e;
    throw e;
  }
}

// ---------------------------------------------------------------- drawing

/** A <details> that stays open (or closed) across redraws: `key` names it in `st.open`. */
function keep(st, key, summary, ...content) {
  return h("details", {
    class: "keep",
    open: st.open.has(key),
    ontoggle: (e) => (e.target.open ? st.open.add(key) : st.open.delete(key)),
  }, h("summary", { dataset: { key: `evolution-${key}` } }, summary), ...content);
}

function fact(label, ...value) {
  return h("div", null, h("dt", null, label), h("dd", null, ...value));
}

function originText(origin) {
  if (!origin) return "—";
  if (origin.kind === "population") return `bred: member #${origin.memberId} of generation ${origin.generation}`;
  if (origin.kind === "explicit") return "given when the session was created";
  return "the default genome (no population chose it)";
}

export function renderEvolution(app) {
  const body = $("#evolution-body");
  const st = app.evolution;
  const updated = $("#evolution-updated");
  if (updated) fill(updated, st?.readAt ? ["read ", timeAgo(st.readAt)] : null);
  if (!st || !st.session) {
    return fill(body, st?.error
      ? h("p", { class: "warn", id: "evolution-error" }, `Could not read the session's genome: ${st.error.message || st.error}${st.error.code ? ` [${st.error.code}]` : ""}`)
      : h("p", { class: "muted" }, "Loading…"));
  }
  const s = st.session;
  // Redrawn only when something it shows changed: a timer refresh that read the same leaves
  // the panel (and whatever a person scrolled to or opened in it) alone.
  const sig = JSON.stringify([s, st.populations, st.population, st.insights, app.model?.status, st.error?.message || null]);
  if (sig === st.drawn && body.firstChild) return;
  st.drawn = sig;
  fill(body,
    st.error ? h("p", { class: "warn small", id: "evolution-error" }, `The last refresh failed (${st.error.message || st.error}); showing what was read before.`) : null,
    h("div", { class: "evo-grid" },
      h("div", { class: "evo-col" },
        genomeSection(s)),
      h("div", { class: "evo-col" },
        populationSection(st, s),
        insightsSection(st, s))),
    outcomeSection(app, s),
    bestSection(st, s));
}

function genomeSection(s) {
  const origin = s.origin || {};
  return h("section", { id: "evolution-genome", class: "evo-section", "aria-labelledby": "evolution-genome-title", dataset: { taskType: s.taskType, origin: origin.kind || "" } },
    h("h3", { id: "evolution-genome-title" }, "This session's genome"),
    h("dl", { class: "facts" },
      fact("Task type", h("span", { id: "evolution-task-type" }, s.taskType)),
      fact("Origin", h("span", { id: "evolution-origin", class: `badge origin-${origin.kind || "unknown"}` }, origin.kind || "?"), " ", originText(origin))),
    s.overridden?.length ? h("p", { class: "small warn" }, `Set by hand on create, replacing what the genome would set: ${s.overridden.join(", ")}. `,
      origin.kind === "population" ? "The member is not credited with this session's fitness." : "") : null,
    h("div", { class: "table-wrap" }, h("table", { id: "evolution-genes", class: "genes-table" },
      h("caption", { class: "sr-only" }, "Each gene's value and what it sets in this session"),
      h("thead", null, h("tr", null, ["Gene", "Value", "What it sets here"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", null, GENES.map(([gene, label, unit, sets]) => {
        const value = s.genome?.[gene];
        return h("tr", { dataset: { gene } },
          h("th", { scope: "row" }, label, h("div", { class: "muted small mono" }, gene)),
          h("td", { class: "gene-value", dataset: { value: JSON.stringify(value ?? null) } }, geneText(value, unit)),
          h("td", { class: "gene-sets small" }, s.effects ? sets(s.effects) : "—"));
      })))));
}

function outcomeSection(app, s) {
  const o = s.outcome;
  const completed = app.model?.status === "completed";
  const head = h("h3", { id: "evolution-outcome-title" }, "Outcome and fitness");
  const wrap = (...children) => h("section", { id: "evolution-outcome", class: "evo-section", "aria-labelledby": "evolution-outcome-title" }, head, ...children);
  if (!o) {
    return wrap(h("p", { class: "muted" }, completed
      ? "Completed: the hub is measuring the outcome…"
      : "Measured and scored when the session completes: tasks done, handoffs, conflicts, tests, errors and tokens, weighed into one fitness score."));
  }
  const m = o.measured || {};
  const measured = h("dl", { class: "facts measured small" },
    fact("Duration", dur(m.durationSecs)),
    MEASURED.map(([key, label]) => fact(label, h("span", { dataset: { measured: key } }, String(m[key] ?? 0)))),
    fact("Tokens", `${m.tokensUsed ?? 0}${m.tokensEstimated ? " (estimated)" : ""}`));
  if (!o.fitness) return wrap(measured, h("p", { class: "muted", id: "evolution-scoring" }, "Measured; the hub is scoring it…"));
  const f = o.fitness;
  return wrap(
    h("p", { class: "fitness" }, "Fitness ", h("strong", { id: "evolution-fitness", dataset: { score: String(f.score) } }, fitnessText(f.score))),
    measured,
    h("div", { class: "table-wrap" }, h("table", { id: "evolution-terms", class: "terms-table" },
      h("caption", { class: "sr-only" }, "The fitness score's terms"),
      h("thead", null, h("tr", null, [["Term", ""], ["From", ""], ["Value", "num"], ["Weight", "num"], ["Points", "num"]].map(([c, cls]) => h("th", { scope: "col", class: cls || null }, c)))),
      h("tbody", null, (f.terms || []).map((t) => h("tr", { dataset: { term: t.name }, class: t.weight === 0 ? "muted" : null },
        h("th", { scope: "row" }, t.name),
        h("td", { class: "small" }, t.formula),
        h("td", { class: "num" }, geneText(t.value)),
        h("td", { class: "num" }, geneText(t.weight)),
        h("td", { class: "num" }, fitnessText(t.points))))),
      h("tfoot", null, h("tr", null, h("th", { scope: "row", colspan: 4 }, "Fitness"), h("td", { class: "num" }, fitnessText(f.score)))))));
}

function populationSection(st, s) {
  const p = st.population;
  const head = h("h3", { id: "evolution-population-title" }, `Population: ${s.taskType}`);
  const wrap = (...children) => h("section", { id: "evolution-population", class: "evo-section", "aria-labelledby": "evolution-population-title", dataset: p ? { generation: String(p.generation) } : {} }, head, ...children);
  if (!p) {
    return wrap(h("p", { class: "muted", id: "evolution-no-population" },
      `No population for “${s.taskType}” yet: one starts when a session is created with this task type (taskType on session create), and breeds every few scored sessions.`));
  }
  const memberId = s.origin?.kind === "population" ? s.origin.memberId : null;
  return wrap(
    h("dl", { class: "facts" },
      fact("Generation", h("span", { id: "evolution-generation" }, String(p.generation))),
      fact("Members", String(p.size)),
      fact("Scored this generation", h("span", { id: "evolution-scored" }, `${p.scoredThisGeneration} of ${p.sessionsPerGeneration}`)),
      fact("Best so far", p.best ? [`member #${p.best.memberId}, fitness `, h("span", { id: "evolution-best-fitness" }, fitnessText(p.best.fitness))] : "nothing scored yet")),
    h("h4", null, "Fitness per generation"),
    fitnessChart(st, p),
    p.members?.length ? keep(st, "members", `Members (${p.members.length})`,
      h("div", { class: "table-wrap small" }, h("table", { id: "evolution-members" },
        h("thead", null, h("tr", null, [["Member", ""], ["Born in", "num"], ["Sessions", "num"], ["Scored", "num"], ["Fitness", "num"]].map(([c, cls]) => h("th", { scope: "col", class: cls || null }, c)))),
        h("tbody", null, p.members.map((x) => h("tr", { dataset: { member: String(x.id) }, class: x.id === memberId ? "current" : null },
          h("th", { scope: "row" }, `#${x.id}`, x.id === memberId ? h("span", { class: "muted" }, " (this session)") : null),
          h("td", { class: "num" }, `gen. ${x.born}`),
          h("td", { class: "num" }, String(x.assigned)),
          h("td", { class: "num" }, String(x.scored)),
          h("td", { class: "num" }, fitnessText(x.fitness)))))))) : null);
}

// ---------------------------------------------------------------- the chart

const SVG_NS = "http://www.w3.org/2000/svg";

/** An SVG element: attributes as attribute values, children as nodes or text. */
function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) if (value != null) el.setAttribute(key, String(value));
  for (const child of children.flat(Infinity)) if (child != null) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

/** Round tick values covering [lo, hi] with about `count` steps. */
function ticks(lo, hi, count = 4) {
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => s >= raw) || 10 * mag;
  const out = [];
  for (let v = Math.floor(lo / step) * step; v <= Math.ceil(hi / step) * step + step / 2; v += step) out.push(+v.toPrecision(12));
  return out;
}

function fitnessChart(st, p) {
  const history = p.history || [];
  if (history.length === 0) {
    return h("p", { class: "muted", id: "evolution-chart-empty" },
      `No generation closed yet: ${p.scoredThisGeneration} of ${p.sessionsPerGeneration} sessions of generation ${p.generation} scored. The chart starts when the first generation closes.`);
  }
  const W = 520;
  const H = 200;
  const L = 52;
  const R = 14;
  const T = 12;
  const B = 34;
  const n = history.length;
  const values = history.flatMap((g) => [g.meanFitness, g.bestFitness]).filter(Number.isFinite);
  let lo = Math.min(0, ...values);
  let hi = Math.max(0, ...values);
  if (hi === lo) hi = lo + 1;
  const yTicks = ticks(lo, hi);
  lo = yTicks[0];
  hi = yTicks[yTicks.length - 1];
  const x = (i) => (n === 1 ? L + (W - L - R) / 2 : L + (i * (W - L - R)) / (n - 1));
  const y = (v) => T + ((hi - v) * (H - T - B)) / (hi - lo);
  const every = Math.ceil(n / 10);
  const first = history[0];
  const last = history[n - 1];
  const desc = n === 1
    ? `Generation ${first.generation}: mean fitness ${fitnessText(first.meanFitness)}, best ${fitnessText(first.bestFitness)}.`
    : `${n} generations, ${first.generation} to ${last.generation}: mean fitness from ${fitnessText(first.meanFitness)} to ${fitnessText(last.meanFitness)}, best from ${fitnessText(first.bestFitness)} to ${fitnessText(last.bestFitness)}.`;
  const line = (key, cls) => (n > 1 ? svg("polyline", { class: `line ${cls}`, points: history.map((g, i) => `${x(i).toFixed(1)},${y(g[key]).toFixed(1)}`).join(" ") }) : null);
  // The mean as a ring, the best as a dot drawn over it: both stay visible where they meet.
  const points = (key, cls, label, r) => svg("g", { class: `points ${cls}` }, history.map((g, i) => svg("circle", { class: `point point-${cls}`, cx: x(i).toFixed(1), cy: y(g[key]).toFixed(1), r, "data-generation": g.generation },
    svg("title", null, `Generation ${g.generation}: ${label} ${fitnessText(g[key])}`))));
  const chart = svg("svg", { id: "evolution-chart", class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": "evolution-chart-title evolution-chart-desc", "data-generations": n },
    svg("title", { id: "evolution-chart-title" }, `Fitness per generation, ${p.taskType}`),
    svg("desc", { id: "evolution-chart-desc" }, desc),
    svg("g", { class: "grid" }, yTicks.map((v) => [
      svg("line", { x1: L, x2: W - R, y1: y(v).toFixed(1), y2: y(v).toFixed(1), class: v === 0 ? "zero" : null }),
      svg("text", { x: L - 6, y: (y(v) + 4).toFixed(1), "text-anchor": "end" }, compact.format(v)),
    ])),
    svg("g", { class: "x-labels" }, history.map((g, i) => (i % every === 0 || i === n - 1
      ? svg("text", { x: x(i).toFixed(1), y: H - B + 18, "text-anchor": "middle" }, String(g.generation)) : null)),
    svg("text", { x: L + (W - L - R) / 2, y: H - 2, "text-anchor": "middle", class: "axis-title" }, "generation")),
    line("meanFitness", "mean"),
    line("bestFitness", "best"),
    points("meanFitness", "mean", "mean", 6.5),
    points("bestFitness", "best", "best", 4));
  return h("figure", { class: "chart-figure" },
    chart,
    h("figcaption", { class: "legend small" },
      h("span", { class: "key key-best", "aria-hidden": "true" }), " best member ",
      h("span", { class: "key key-mean", "aria-hidden": "true" }), " mean of the generation"),
    keep(st, "history", "Fitness per generation as a table",
      h("div", { class: "table-wrap small" }, h("table", { id: "evolution-history" },
        h("thead", null, h("tr", null, [["Generation", ""], ["Sessions", "num"], ["Mean", "num"], ["Best", "num"], ["Best member", "num"]].map(([c, cls]) => h("th", { scope: "col", class: cls || null }, c)))),
        h("tbody", null, history.map((g) => h("tr", { dataset: { generation: String(g.generation) } },
          h("th", { scope: "row" }, String(g.generation)),
          h("td", { class: "num" }, String(g.sessions)),
          h("td", { class: "num" }, fitnessText(g.meanFitness)),
          h("td", { class: "num" }, fitnessText(g.bestFitness)),
          h("td", { class: "num" }, `#${g.bestMember}`))))))));
}

// ---------------------------------------------------------------- insights, best genomes

function pct(x) {
  return `${(100 * x).toFixed(x >= 0.995 && x < 1 ? 1 : 0)} %`;
}

function pValue(p) {
  return p < 0.001 ? "< 0.001" : p.toFixed(3);
}

function insightsSection(st, s) {
  const ins = st.insights;
  const head = h("h3", { id: "evolution-insights-title" }, `Insights: ${s.taskType}`);
  const wrap = (...children) => h("section", { id: "evolution-insights", class: "evo-section", "aria-labelledby": "evolution-insights-title" }, head, ...children);
  if (!ins) return wrap(h("p", { class: "muted" }, "Loading…"));
  const n = ins.sessions ?? 0;
  const list = ins.insights || [];
  if (list.length === 0) {
    return wrap(h("p", { id: "evolution-no-insights", dataset: { sessions: String(n) } }, `No significant pattern yet (${n} session${n === 1 ? "" : "s"}).`),
      h("p", { class: "muted small" }, "A pattern shows once the scored sessions of this task type support it: a permutation test per gene, adjusted for testing every gene (Holm), at 5 %."));
  }
  return wrap(
    h("p", { class: "muted small" }, `From ${n} scored session${n === 1 ? "" : "s"}; only what the permutation test supports (Holm-adjusted, 5 %).`),
    h("ul", { class: "insight-list" }, list.map((x) => h("li", { class: `insight ${x.higher ? "higher" : "lower"}`, dataset: { gene: x.gene } },
      h("p", { class: "pattern" }, h("strong", null, x.pattern)),
      h("p", { class: "small" }, x.evidence),
      h("p", { class: "small muted" },
        `confidence ${pct(x.confidence)} · ${x.samples} sessions (${x.groupSamples ?? "?"} in the group, ${x.restSamples ?? "?"} not) · mean ${fitnessText(x.meanInGroup)} vs ${fitnessText(x.meanRest)}`,
        x.cohensD != null ? ` · d = ${x.cohensD.toFixed(2)}` : "",
        ` · p = ${pValue(x.pValue)}, adjusted ${pValue(x.adjustedPValue)}`)))));
}

function bestSection(st, s) {
  const pops = st.populations || [];
  return h("section", { id: "evolution-best", class: "evo-section", "aria-labelledby": "evolution-best-title" },
    h("h3", { id: "evolution-best-title" }, "Best genome per task type"),
    pops.length === 0
      ? h("p", { class: "muted" }, "No task type has a population yet: sessions created with a taskType start one.")
      : h("div", { class: "table-wrap" }, h("table", { class: "best-table" },
        h("thead", null, h("tr", null, [["Task type", ""], ["Generation", "num"], ["Best fitness", "num"], ["Best genome", ""]].map(([c, cls]) => h("th", { scope: "col", class: cls || null }, c)))),
        h("tbody", null, pops.map((p) => h("tr", { dataset: { taskType: p.taskType }, class: p.taskType === s.taskType ? "current" : null },
          h("th", { scope: "row" }, p.taskType, p.taskType === s.taskType ? h("span", { class: "muted" }, " (this session)") : null),
          h("td", { class: "num" }, String(p.generation)),
          h("td", { class: "num best-fitness" }, p.best ? fitnessText(p.best.fitness) : "—"),
          h("td", { class: "small" }, p.best
            ? keep(st, `best-${p.taskType}`, `member #${p.best.memberId}`,
              h("dl", { class: "genome-list" }, GENES.map(([gene, label, unit]) => h("div", null, h("dt", null, label), h("dd", null, geneText(p.best.genome?.[gene], unit))))))
            : h("span", { class: "muted" }, "nothing scored yet"))))))));
}
