//! Session export (`session_export`): the whole session as one document, a summary on top and
//! then one timeline of what happened, oldest first, as Markdown, HTML or JSON.
//!
//! Built from the session's event log (every event the viewer may see) plus the change ledger
//! and the suggestions for diffs. Pure: the store reads [`Logged`] rows into a [`Timeline`] and
//! the [`LogFacts`] (counts are SQL aggregates over the whole log); the session actor adds what it
//! holds in memory ([`Head`]); [`assemble`] makes the [`Document`] and [`render`] the text.
//!
//! Decisions:
//! - Whose view: a participant sees what it sees everywhere in the hub (broadcasts, and directed
//!   events it sent or received; `Event::visible_to`); the operator sees everything. The summary's
//!   counts follow the same view.
//! - Bounded: the timeline holds at most [`MAX_ENTRIES`] events, the **newest** (the latest
//!   work is what an export is usually read for; the summary still counts the whole log), and
//!   the document says so in `truncated`. Each entry's longer parts are capped (message bodies
//!   and other details [`DETAIL_BYTES`], diffs [`DIFF_BYTES`], payloads [`PAYLOAD_BYTES`]) and
//!   all of them together share [`BUDGET_BYTES`]: once it is spent, older entries keep their
//!   one-line text only. Stored payloads above [`READ_PAYLOAD_BYTES`] are not even read. So an
//!   export's memory is bounded whatever the log holds.
//! - The JSON form is documented by `docs/export.schema.json`, generated from [`Document`]
//!   (a unit test fails when the checked-in file differs).

mod describe;
mod html;
mod markdown;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::event::Priority;
use super::role::Role;
use super::session::{HandshakeMode, SessionStatus};

/// Timeline entries an export holds at most (the newest).
pub const MAX_ENTRIES: usize = 20_000;
/// Longest detail (a message's body, review feedback, a report's details) kept per entry.
pub const DETAIL_BYTES: usize = 16 * 1024;
/// Longest diff kept per entry.
pub const DIFF_BYTES: usize = 64 * 1024;
/// Largest payload (as JSON) a JSON export carries per entry.
pub const PAYLOAD_BYTES: usize = 16 * 1024;
/// Details, diffs and payloads of all entries together; beyond it entries keep their text.
pub const BUDGET_BYTES: usize = 32 * 1024 * 1024;
/// Stored payloads longer than this are not read at all.
pub const READ_PAYLOAD_BYTES: i64 = 256 * 1024;
/// Files the summary lists at most (the most changed).
pub const MAX_FILES: i64 = 500;
/// Version of the JSON document (`docs/export.schema.json`).
pub const VERSION: u32 = 1;
/// Longest one-line text of an entry, in characters.
const TEXT_CHARS: usize = 300;

/// The export's form.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Markdown,
    Json,
    Html,
}

/// What an event is about, for grouping and colouring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Session,
    Membership,
    Message,
    Handshake,
    Role,
    Task,
    Lock,
    Change,
    Status,
    Context,
    Checkpoint,
    Other,
}

impl Category {
    pub fn of(kind: &str) -> Category {
        match kind {
            "session_created" | "session_status_changed" | "session_saved" => Category::Session,
            "participant_joined" | "participant_left" | "token_reissued" => Category::Membership,
            "message_sent" | "message_acked" | "message_ack_overdue" => Category::Message,
            "handshake" | "control_passed" | "review_overdue" => Category::Handshake,
            "role_requested" | "role_request_refused" | "role_changed" | "role_change_pending" => {
                Category::Role
            }
            k if k.starts_with("task_") => Category::Task,
            "resource_locked"
            | "resource_released"
            | "lock_queued"
            | "lock_renewed"
            | "lock_force_released" => Category::Lock,
            "change_recorded"
            | "change_conflict"
            | "suggestion_submitted"
            | "suggestion_resolved" => Category::Change,
            "status_reported" => Category::Status,
            "context_changed" | "memory_pushed" | "memory_cleared" | "notes_updated"
            | "discovery_reported" => Category::Context,
            "checkpoint_begun" | "checkpoint_ended" => Category::Checkpoint,
            _ => Category::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Session => "session",
            Category::Membership => "membership",
            Category::Message => "message",
            Category::Handshake => "handshake",
            Category::Role => "role",
            Category::Task => "task",
            Category::Lock => "lock",
            Category::Change => "change",
            Category::Status => "status",
            Category::Context => "context",
            Category::Checkpoint => "checkpoint",
            Category::Other => "other",
        }
    }
}

/// A collab-hub session export (JSON form). Times are RFC 3339 in UTC.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "collab-hub session export")]
pub struct Document {
    /// Version of this document's format (1).
    pub version: u32,
    #[schemars(extend("format" = "date-time"))]
    pub generated_at: String,
    /// Whose view this is: a participant's id (events directed to others are left out), or
    /// absent for the operator's view (everything).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub viewer: Option<String>,
    /// Diffs of recorded changes and suggestions are included.
    pub include_code: bool,
    pub session: SessionInfo,
    pub summary: Summary,
    /// Present when the timeline or its entries do not show everything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<Truncation>,
    /// What happened, oldest first.
    pub timeline: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    pub id: String,
    pub name: String,
    pub project: String,
    pub status: SessionStatus,
    pub handshake_mode: HandshakeMode,
    #[schemars(extend("format" = "date-time"))]
    pub created_at: String,
    /// Time of the session's last event.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub last_event_at: Option<String>,
    /// From creation to the last event.
    pub duration_secs: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Everyone who took part, in the order they joined.
    pub participants: Vec<ParticipantInfo>,
    /// Events in the log (this view's), shown or not.
    pub events: i64,
    /// Events by category (`message`, `handshake`, `task`, …).
    pub by_category: BTreeMap<String, i64>,
    /// Events by kind as logged (`message_sent`, `change_recorded`, …).
    pub by_kind: BTreeMap<String, i64>,
    pub tasks: TaskCounts,
    /// Files changed, most changed first (at most 500).
    pub files: Vec<FileInfo>,
    /// Files changed in all.
    pub files_total: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantInfo {
    pub ai_id: String,
    /// Its role now (or when it left).
    pub role: Role,
    #[schemars(extend("format" = "date-time"))]
    pub joined_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub left_at: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskCounts {
    pub done: i64,
    pub total: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileInfo {
    pub path: String,
    /// Changes recorded to it.
    pub changes: i64,
    /// Who changed it, most first.
    pub by: Vec<AuthorCount>,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthorCount {
    pub ai_id: String,
    pub changes: i64,
}

/// What the export leaves out.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Truncation {
    /// Events in the log (this view's).
    pub events: i64,
    /// Events in the timeline: the newest.
    pub shown: i64,
    /// The oldest events, left out of the timeline (still counted in the summary).
    pub omitted: i64,
    /// Entries that kept only their text: the export's byte budget was spent.
    pub details_omitted: i64,
    /// Events #1 to this one were compacted by the retention policy: gone from the log, not
    /// counted (0: none).
    pub compacted_through: i64,
    /// The same, in words.
    pub note: String,
}

/// One event of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// The event's id in the session's log.
    pub id: i64,
    #[schemars(extend("format" = "date-time"))]
    pub at: String,
    pub category: Category,
    /// The event's kind as logged (`message_sent`, `change_recorded`, …).
    pub kind: String,
    /// Who caused it; absent when the hub or the operator did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The one participant a directed event is for; absent for everyone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    pub priority: Priority,
    /// What happened, in one line.
    pub text: String,
    /// Longer text: a message's body, review feedback, a report's details.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Unified diff of a recorded change or a suggestion (with includeCode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// The event's payload as logged (JSON form only, when small).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// What was cut from this entry, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One logged event as the store reads it for an export.
#[derive(Debug, Clone, PartialEq)]
pub struct Logged {
    pub id: i64,
    pub at: NaiveDateTime,
    pub kind: String,
    pub actor: Option<String>,
    pub to: Option<String>,
    pub priority: Priority,
    /// `None` when the stored payload was too large to read (see `payload_bytes`).
    pub payload: Option<Value>,
    pub payload_bytes: i64,
    /// The diff of the change or suggestion the event recorded (only when code is wanted; the
    /// store may read only its first `DIFF_BYTES` characters).
    pub diff: Option<String>,
    /// The whole diff's length.
    pub diff_bytes: i64,
}

/// The timeline as it is built: the store pushes events newest first, page by page, until it is
/// full; the byte budget goes to the newest entries.
#[derive(Debug)]
pub struct Timeline {
    format: Format,
    include_code: bool,
    /// Newest first while building.
    entries: Vec<Entry>,
    spent: usize,
    details_omitted: i64,
}

impl Timeline {
    pub fn new(format: Format, include_code: bool) -> Timeline {
        Timeline {
            format,
            include_code,
            entries: Vec::new(),
            spent: 0,
            details_omitted: 0,
        }
    }

    /// Diffs are wanted.
    pub fn wants_code(&self) -> bool {
        self.include_code
    }

    pub fn is_full(&self) -> bool {
        self.entries.len() >= MAX_ENTRIES
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds the next older event (ignored once the timeline is full).
    pub fn push_older(&mut self, e: Logged) {
        if self.is_full() {
            return;
        }
        let (text, detail) = describe::describe(&e);
        let mut notes: Vec<String> = Vec::new();
        let detail = detail.map(|d| clip_bytes(&d, DETAIL_BYTES, "detail", &mut notes));
        let diff = match (self.include_code, e.diff) {
            (true, Some(d)) => Some(clip_diff(&d, e.diff_bytes, &mut notes)),
            _ => None,
        };
        let payload = match (&e.payload, self.format) {
            (Some(p), Format::Json) => {
                let size = p.to_string().len();
                if size <= PAYLOAD_BYTES {
                    Some(p.clone())
                } else {
                    notes.push(format!(
                        "payload left out: {size} bytes, over {PAYLOAD_BYTES}"
                    ));
                    None
                }
            }
            _ => None,
        };
        let size = detail.as_ref().map_or(0, String::len)
            + diff.as_ref().map_or(0, String::len)
            + payload.as_ref().map_or(0, |p| p.to_string().len());
        let (detail, diff, payload) = if self.spent + size > BUDGET_BYTES {
            self.details_omitted += 1;
            notes = vec![format!(
                "details left out: the export's {} MiB budget for details and diffs is spent",
                BUDGET_BYTES / (1024 * 1024)
            )];
            (None, None, None)
        } else {
            self.spent += size;
            (detail, diff, payload)
        };
        self.entries.push(Entry {
            id: e.id,
            at: time(e.at),
            category: Category::of(&e.kind),
            kind: e.kind,
            actor: e.actor,
            to: e.to,
            priority: e.priority,
            text,
            detail,
            diff,
            payload,
            note: (!notes.is_empty()).then(|| notes.join("; ")),
        });
    }

    /// The entries oldest first, and how many kept only their text.
    fn finish(mut self) -> (Vec<Entry>, i64) {
        self.entries.reverse();
        (self.entries, self.details_omitted)
    }
}

/// What the session actor knows from memory.
#[derive(Debug, Clone)]
pub struct Head {
    pub session_id: Uuid,
    pub name: String,
    pub project: String,
    pub status: SessionStatus,
    pub handshake_mode: HandshakeMode,
    pub created_at: NaiveDateTime,
    /// Everyone who took part, in the order they joined.
    pub participants: Vec<ParticipantInfo>,
    /// `None`: the operator.
    pub viewer: Option<String>,
    pub include_code: bool,
    pub now: NaiveDateTime,
}

/// What the store read from the log (aggregates over the whole log, the timeline's newest).
#[derive(Debug)]
pub struct LogFacts {
    /// Events the viewer sees in the log.
    pub events: i64,
    pub by_kind: Vec<(String, i64)>,
    pub last_event_at: Option<NaiveDateTime>,
    pub tasks: TaskCounts,
    pub files: Vec<FileInfo>,
    pub files_total: i64,
    /// The log's events up to this id were compacted away (retention); 0: none.
    pub compacted_through: i64,
    pub timeline: Timeline,
}

/// The document: the summary from memory and the log's aggregates, the timeline from the log.
pub fn assemble(head: Head, facts: LogFacts) -> Document {
    let mut by_category: BTreeMap<String, i64> = BTreeMap::new();
    for (kind, n) in &facts.by_kind {
        *by_category
            .entry(Category::of(kind).as_str().to_owned())
            .or_default() += n;
    }
    let (timeline, details_omitted) = facts.timeline.finish();
    let shown = timeline.len() as i64;
    let omitted = (facts.events - shown).max(0);
    let compacted = facts.compacted_through;
    let truncated = (omitted > 0 || details_omitted > 0 || compacted > 0).then(|| Truncation {
        events: facts.events,
        shown,
        omitted,
        details_omitted,
        compacted_through: compacted,
        note: truncation_note(facts.events, shown, omitted, details_omitted, compacted),
    });
    let end = facts.last_event_at.unwrap_or(head.created_at);
    Document {
        version: VERSION,
        generated_at: time(head.now),
        viewer: head.viewer,
        include_code: head.include_code,
        session: SessionInfo {
            id: head.session_id.to_string(),
            name: head.name,
            project: head.project,
            status: head.status,
            handshake_mode: head.handshake_mode,
            created_at: time(head.created_at),
            last_event_at: facts.last_event_at.map(time),
            duration_secs: (end - head.created_at).num_seconds().max(0),
        },
        summary: Summary {
            participants: head.participants,
            events: facts.events,
            by_category,
            by_kind: facts.by_kind.into_iter().collect(),
            tasks: facts.tasks,
            files: facts.files,
            files_total: facts.files_total,
        },
        truncated,
        timeline,
    }
}

fn truncation_note(
    events: i64,
    shown: i64,
    omitted: i64,
    details_omitted: i64,
    compacted: i64,
) -> String {
    let mut parts = Vec::new();
    if compacted > 0 {
        parts.push(format!(
            "events #1 to #{compacted} were compacted by the retention policy and are no longer in \
             the log (the tasks and files in the summary still count them)"
        ));
    }
    if omitted > 0 {
        parts.push(format!(
            "the timeline shows the newest {shown} of {events} events (at most {MAX_ENTRIES}); \
             the {omitted} oldest are left out but counted in the summary"
        ));
    }
    if details_omitted > 0 {
        parts.push(format!(
            "{details_omitted} older entries show their one-line text only (the {} MiB budget \
             for details and diffs was spent)",
            BUDGET_BYTES / (1024 * 1024)
        ));
    }
    let mut note = parts.join("; ");
    if let Some(first) = note.get(..1) {
        note = first.to_uppercase() + &note[1..];
    }
    note.push('.');
    note
}

/// What an export answers with: the text (Markdown, HTML) or the JSON document.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Document(Box<Document>),
}

pub fn render(doc: Document, format: Format) -> Content {
    match format {
        Format::Markdown => Content::Text(markdown::render(&doc)),
        Format::Html => Content::Text(html::render(&doc)),
        Format::Json => Content::Document(Box::new(doc)),
    }
}

/// The JSON Schema of the JSON form, as checked in at `docs/export.schema.json`.
pub fn schema() -> String {
    let schema = schemars::schema_for!(Document);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

/// RFC 3339 in UTC with a `Z`, as everywhere in the hub.
pub fn time(t: NaiveDateTime) -> String {
    t.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// `2026-12-02T22:34:51.123456Z` → `2026-12-02T22:34:51Z`, for people.
fn to_second(t: &str) -> String {
    match (t.find('.'), t.ends_with('Z')) {
        (Some(dot), true) => format!("{}Z", &t[..dot]),
        _ => t.to_owned(),
    }
}

/// "2 hours 5 minutes", "45 seconds", "3 days 4 hours".
fn span(secs: i64) -> String {
    let secs = secs.max(0);
    let unit = |n: i64, name: &str| format!("{n} {name}{}", if n == 1 { "" } else { "s" });
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3_600,
        secs % 3_600 / 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => unit(s, "second"),
        (0, 0, _) => unit(m, "minute"),
        (0, _, 0) => unit(h, "hour"),
        (0, _, _) => format!("{} {}", unit(h, "hour"), unit(m, "minute")),
        (_, 0, _) => unit(d, "day"),
        _ => format!("{} {}", unit(d, "day"), unit(h, "hour")),
    }
}

/// `text` cut to at most `max` bytes at a character boundary, noting the cut.
fn clip_bytes(text: &str, max: usize, what: &str, notes: &mut Vec<String>) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    notes.push(format!(
        "{what} clipped: {max} of {} bytes shown",
        text.len()
    ));
    format!("{}…", &text[..end])
}

/// A diff (of `total` bytes in all) cut to at most `DIFF_BYTES` at a line end, noting the cut.
fn clip_diff(diff: &str, total: i64, notes: &mut Vec<String>) -> String {
    let total = total.max(diff.len() as i64);
    if diff.len() <= DIFF_BYTES && total == diff.len() as i64 {
        return diff.to_owned();
    }
    let mut end = DIFF_BYTES.min(diff.len());
    while !diff.is_char_boundary(end) {
        end -= 1;
    }
    let end = diff[..end].rfind('\n').map_or(end, |i| i + 1);
    notes.push(format!("diff clipped: {end} of {total} bytes shown"));
    diff[..end].to_owned()
}

/// Text views of the summary shared by the Markdown and HTML forms.
fn viewer_line(doc: &Document) -> String {
    match &doc.viewer {
        None => "the operator's view: every event".into(),
        Some(ai) => format!("{ai}'s view: events directed to others are not shown"),
    }
}

fn tasks_line(t: TaskCounts) -> String {
    match t.total {
        0 => "none".into(),
        n => format!("{} of {n} done ({}%)", t.done, t.done * 100 / n),
    }
}

fn who_line(f: &FileInfo) -> String {
    f.by.iter()
        .map(|a| format!("{} ({})", a.ai_id, a.changes))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One kind's events per category, for the summary: "message_sent 3, message_acked 1".
fn kinds_of(doc: &Document, category: &str) -> String {
    let mut kinds: Vec<(&String, &i64)> = doc
        .summary
        .by_kind
        .iter()
        .filter(|(k, _)| Category::of(k).as_str() == category)
        .collect();
    kinds.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    kinds
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
