//! What a session export reads: aggregates over the viewer's whole log (counts by kind, tasks,
//! files changed), and its newest events page by page, newest first, straight into the
//! domain's bounded timeline. Nothing here holds more than one page of rows; payloads above
//! `READ_PAYLOAD_BYTES` are not read, and diffs are read only up to what an entry keeps.
//!
//! Events are read up to `upto` (the session's last event when the export began), so the
//! counts and the timeline describe the same log even while the session goes on.

use chrono::NaiveDateTime;
use diesel::dsl::{count_star, max, min, sql};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use uuid::Uuid;

use super::DbConn;
use super::codec::decode_payload;
use super::schema::{code_changes, events, suggestions, tasks};
use crate::domain::event::Priority;
use crate::domain::export::{
    AuthorCount, DIFF_BYTES, FileInfo, LogFacts, Logged, MAX_FILES, READ_PAYLOAD_BYTES, TaskCounts,
    Timeline,
};
use crate::domain::ledger::CHANGE_RECORDED;
use crate::error::HubError;

/// Events read per query.
const PAGE: usize = 200;

type EventLine = (
    i64,
    Option<String>,
    String,
    String,
    Option<String>,
    i64,
    NaiveDateTime,
    Option<String>,
);

/// Reads the facts of an export of session `session_id` as `viewer` sees it (`None`: the
/// operator, everything), events up to `upto`, and fills `timeline` with the newest.
pub fn read(
    conn: &mut DbConn,
    session_id: Uuid,
    viewer: Option<&str>,
    upto: i64,
    mut timeline: Timeline,
) -> Result<LogFacts, HubError> {
    let sid = session_id.to_string();
    let me = viewer.unwrap_or("");
    let everything = viewer.is_none();
    // The viewer's events: broadcasts, and directed events it sent or received (as
    // `queries::EventFilter`); the operator's: all of them.
    macro_rules! visible {
        () => {
            events::table
                .filter(events::session_id.eq(&sid))
                .filter(events::id.le(upto))
                .filter(
                    everything
                        .into_sql::<Bool>()
                        .or(events::recipient.is_null())
                        .or(events::recipient.eq(me))
                        .or(events::actor.eq(me)),
                )
        };
    }

    let by_kind: Vec<(String, i64)> = visible!()
        .group_by(events::kind)
        .select((events::kind, count_star()))
        .load(conn)?;
    let total = by_kind.iter().map(|(_, n)| n).sum();
    let (last_event_at, first): (Option<NaiveDateTime>, Option<i64>) = events::table
        .filter(events::session_id.eq(&sid))
        .filter(events::id.le(upto))
        .select((max(events::created_at), min(events::id)))
        .first(conn)?;
    // Retention deletes a completed session's events from the first one on.
    let compacted_through = first.unwrap_or(upto + 1) - 1;

    let statuses: Vec<(String, i64)> = tasks::table
        .filter(tasks::session_id.eq(&sid))
        .group_by(tasks::status)
        .select((tasks::status, count_star()))
        .load(conn)?;
    let tasks = TaskCounts {
        done: statuses
            .iter()
            .filter(|(s, _)| s == "completed")
            .map(|(_, n)| n)
            .sum(),
        total: statuses.iter().map(|(_, n)| n).sum(),
    };

    let changes = || {
        code_changes::table
            .filter(code_changes::session_id.eq(&sid))
            .filter(code_changes::id.le(upto))
    };
    let files_total: i64 = changes()
        .select(sql::<BigInt>("COUNT(DISTINCT file_path)"))
        .first(conn)?;
    let top: Vec<(String, i64)> = changes()
        .group_by(code_changes::file_path)
        .select((code_changes::file_path, count_star()))
        .order((count_star().desc(), code_changes::file_path.asc()))
        .limit(MAX_FILES)
        .load(conn)?;
    let paths: Vec<&str> = top.iter().map(|(p, _)| p.as_str()).collect();
    let authors: Vec<(String, String, i64)> = if paths.is_empty() {
        Vec::new()
    } else {
        changes()
            .filter(code_changes::file_path.eq_any(&paths))
            .group_by((code_changes::file_path, code_changes::ai_id))
            .select((code_changes::file_path, code_changes::ai_id, count_star()))
            .load(conn)?
    };
    let files = top
        .iter()
        .map(|(path, n)| {
            let mut by: Vec<AuthorCount> = authors
                .iter()
                .filter(|(p, _, _)| p == path)
                .map(|(_, ai, n)| AuthorCount {
                    ai_id: ai.clone(),
                    changes: *n,
                })
                .collect();
            by.sort_by(|a, b| b.changes.cmp(&a.changes).then(a.ai_id.cmp(&b.ai_id)));
            FileInfo {
                path: path.clone(),
                changes: *n,
                by,
            }
        })
        .collect();

    // The timeline: newest first, one page at a time, until it is full or the log ends.
    let payload_sql = format!("CASE WHEN LENGTH(payload) <= {READ_PAYLOAD_BYTES} THEN payload END");
    let mut before = upto.saturating_add(1);
    while !timeline.is_full() {
        let want = PAGE.min(crate::domain::export::MAX_ENTRIES - timeline.len()) as i64;
        let page: Vec<EventLine> = visible!()
            .filter(events::id.lt(before))
            .order(events::id.desc())
            .limit(want)
            .select((
                events::id,
                events::actor,
                events::kind,
                events::priority,
                sql::<Nullable<Text>>(&payload_sql),
                sql::<BigInt>("CAST(OCTET_LENGTH(payload) AS BIGINT)"),
                events::created_at,
                events::recipient,
            ))
            .load(conn)?;
        let Some(last) = page.last() else {
            break;
        };
        before = last.0;
        let mut diffs = if timeline.wants_code() {
            diffs_of(conn, &sid, &page)?
        } else {
            Vec::new()
        };
        let full_page = page.len() as i64 == want;
        for (id, actor, kind, priority, payload, payload_bytes, at, to) in page {
            let payload = payload.and_then(|p| match decode_payload(&p) {
                Ok(v) => Some(v),
                Err(e) => {
                    log::warn!("session {session_id}: event #{id} is unreadable: {e}");
                    None
                }
            });
            let (diff, diff_bytes) = match diffs.iter().position(|(d, _, _)| *d == id) {
                Some(i) => {
                    let (_, diff, bytes) = diffs.swap_remove(i);
                    (Some(diff), bytes)
                }
                None => (None, 0),
            };
            timeline.push_older(Logged {
                id,
                at,
                kind,
                actor,
                to,
                priority: Priority::parse(&priority).ok_or_else(|| {
                    HubError::Internal(format!("stored event #{id} has an unreadable priority"))
                })?,
                payload,
                payload_bytes,
                diff,
                diff_bytes,
            });
        }
        if !full_page {
            break;
        }
    }

    Ok(LogFacts {
        events: total,
        by_kind,
        last_event_at,
        tasks,
        files,
        files_total,
        compacted_through,
        timeline,
    })
}

/// The diffs of the changes and suggestions a page records, as (event id, the diff's first
/// `DIFF_BYTES` characters and one more, its length in bytes).
fn diffs_of(
    conn: &mut DbConn,
    sid: &str,
    page: &[EventLine],
) -> Result<Vec<(i64, String, i64)>, HubError> {
    let ids =
        |kind: &str| -> Vec<i64> { page.iter().filter(|e| e.2 == kind).map(|e| e.0).collect() };
    let (changed, suggested) = (ids(CHANGE_RECORDED), ids("suggestion_submitted"));
    let head = format!("SUBSTR(diff, 1, {})", DIFF_BYTES + 1);
    let mut out: Vec<(i64, String, i64)> = Vec::new();
    if !changed.is_empty() {
        let rows: Vec<(i64, Option<String>, Option<i64>)> = code_changes::table
            .filter(code_changes::session_id.eq(sid))
            .filter(code_changes::id.eq_any(&changed))
            .filter(code_changes::diff.is_not_null())
            .select((
                code_changes::id,
                sql::<Nullable<Text>>(&head),
                sql::<Nullable<BigInt>>("CAST(OCTET_LENGTH(diff) AS BIGINT)"),
            ))
            .load(conn)?;
        out.extend(
            rows.into_iter()
                .filter_map(|(id, d, n)| Some((id, d?, n.unwrap_or(0)))),
        );
    }
    if !suggested.is_empty() {
        let rows: Vec<(i64, String, i64)> = suggestions::table
            .filter(suggestions::session_id.eq(sid))
            .filter(suggestions::id.eq_any(&suggested))
            .select((
                suggestions::id,
                sql::<Text>(&head),
                sql::<BigInt>("CAST(OCTET_LENGTH(diff) AS BIGINT)"),
            ))
            .load(conn)?;
        out.extend(rows.into_iter().filter(|(_, d, _)| !d.is_empty()));
    }
    Ok(out)
}
