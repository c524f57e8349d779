//! Genomes over time: each completed session's measured outcome and score
//! (`session_outcomes`), and each task type's population (`populations`).

use chrono::NaiveDateTime;
use diesel::prelude::*;
use uuid::Uuid;

use super::DbConn;
use super::queries::{EventFilter, events_after};
use super::schema::{events, populations, session_outcomes};
use crate::domain::evolution::Population;
use crate::domain::fitness::{FitnessScore, SessionOutcome};
use crate::domain::genome::SessionGenome;
use crate::domain::message::MESSAGE_SENT;
use crate::domain::outcome::{MEASURED_KINDS, measure};
use crate::error::HubError;

diesel::define_sql_function!(fn length(x: diesel::sql_types::Text) -> diesel::sql_types::Integer);

/// Most events of the measured kinds read for one session's outcome (the newest beyond this
/// are not counted; a session this long is far past what one outcome summarises).
const MAX_MEASURED_EVENTS: i64 = 200_000;

fn json_err(what: &str, e: serde_json::Error) -> HubError {
    log::error!("stored {what} does not decode: {e}");
    HubError::Internal(format!("stored {what} is unreadable"))
}

/// A completed session as the evolution history holds it.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = session_outcomes)]
pub struct OutcomeRow {
    pub session_id: String,
    pub task_type: String,
    pub member_id: Option<i64>,
    pub generation: Option<i32>,
    pub genome: String,
    pub outcome: String,
    pub fitness: Option<f64>,
    pub terms: Option<String>,
    pub completed_at: NaiveDateTime,
}

impl OutcomeRow {
    pub fn session_genome(&self) -> Result<SessionGenome, HubError> {
        serde_json::from_str(&self.genome).map_err(|e| json_err("session genome", e))
    }

    pub fn measured(&self) -> Result<SessionOutcome, HubError> {
        serde_json::from_str(&self.outcome).map_err(|e| json_err("session outcome", e))
    }
}

/// Measures the session from its log and records the outcome (inside the completion's
/// transaction). A session completes once, so a second record is refused by the key.
pub fn record_outcome(
    conn: &mut DbConn,
    session_id: Uuid,
    genome: &SessionGenome,
    created_at: NaiveDateTime,
    completed_at: NaiveDateTime,
) -> Result<SessionOutcome, HubError> {
    let sid = session_id.to_string();
    let filter = EventFilter {
        kinds: Some(&MEASURED_KINDS),
        ..Default::default()
    };
    let measured = events_after(conn, session_id, filter, 0, MAX_MEASURED_EVENTS)?;
    let messages: i64 = events::table
        .filter(events::session_id.eq(&sid))
        .filter(events::kind.eq(MESSAGE_SENT))
        .count()
        .get_result(conn)?;
    let bytes: Option<i64> = events::table
        .filter(events::session_id.eq(&sid))
        .select(diesel::dsl::sum(length(events::payload)))
        .first(conn)?;
    let outcome = measure(
        &measured,
        u32::try_from(messages).unwrap_or(u32::MAX),
        bytes.unwrap_or(0).max(0) as u64,
        created_at.and_utc(),
        completed_at.and_utc(),
    );
    let (member_id, generation) = match genome.origin {
        crate::domain::genome::GenomeOrigin::Population {
            member_id,
            generation,
        } => (Some(member_id as i64), Some(generation as i32)),
        _ => (None, None),
    };
    diesel::insert_into(session_outcomes::table)
        .values(OutcomeRow {
            session_id: sid,
            task_type: genome.task_type.to_string(),
            member_id,
            generation,
            genome: serde_json::to_string(genome).unwrap_or_default(),
            outcome: serde_json::to_string(&outcome).unwrap_or_default(),
            fitness: None,
            terms: None,
            completed_at,
        })
        .execute(conn)?;
    Ok(outcome)
}

/// Outcomes not yet scored, oldest first.
pub fn unscored(conn: &mut DbConn) -> Result<Vec<OutcomeRow>, HubError> {
    Ok(session_outcomes::table
        .filter(session_outcomes::fitness.is_null())
        .order((
            session_outcomes::completed_at.asc(),
            session_outcomes::session_id.asc(),
        ))
        .select(OutcomeRow::as_select())
        .load(conn)?)
}

pub fn set_score(
    conn: &mut DbConn,
    session_id: &str,
    score: &FitnessScore,
) -> Result<(), HubError> {
    diesel::update(session_outcomes::table.find(session_id))
        .set((
            session_outcomes::fitness.eq(Some(score.score)),
            session_outcomes::terms.eq(Some(serde_json::to_string(score).unwrap_or_default())),
        ))
        .execute(conn)?;
    Ok(())
}

/// Scored sessions of a task type (all types: `None`), newest first, at most `limit`.
pub fn scored(
    conn: &mut DbConn,
    task_type: Option<&str>,
    limit: i64,
) -> Result<Vec<OutcomeRow>, HubError> {
    let mut q = session_outcomes::table
        .filter(session_outcomes::fitness.is_not_null())
        .order((
            session_outcomes::completed_at.desc(),
            session_outcomes::session_id.desc(),
        ))
        .limit(limit)
        .select(OutcomeRow::as_select())
        .into_boxed();
    if let Some(t) = task_type {
        q = q.filter(session_outcomes::task_type.eq(t.to_owned()));
    }
    Ok(q.load(conn)?)
}

/// One session's outcome row, scored or not.
pub fn outcome_of(conn: &mut DbConn, session_id: Uuid) -> Result<Option<OutcomeRow>, HubError> {
    Ok(session_outcomes::table
        .find(session_id.to_string())
        .select(OutcomeRow::as_select())
        .first(conn)
        .optional()?)
}

/// A stored population by its task type, decoded or why not.
pub type StoredPopulation = (String, Result<Population, HubError>);

/// Every stored population by task type, each decoded on its own: one unreadable row must not
/// hide the others.
pub fn load_populations(conn: &mut DbConn) -> Result<Vec<StoredPopulation>, HubError> {
    let rows: Vec<(String, String)> = populations::table
        .order(populations::task_type.asc())
        .select((populations::task_type, populations::state))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(key, state)| {
            let p = serde_json::from_str(&state).map_err(|e| json_err("population", e));
            (key, p)
        })
        .collect())
}

/// The advisory lock (class, key) every evolution write takes first on PostgreSQL: the draws and
/// scoring passes of hubs sharing one database run one at a time, each on the populations as
/// they are stored then. (SQLite has one writer, in one process.)
const EVOLUTION_LOCK: (i32, i32) = (7302, 0);

/// Takes the evolution lock until the transaction ends. Call it before reading a population
/// that the transaction will save.
pub fn lock_populations(conn: &mut DbConn) -> Result<(), HubError> {
    use diesel::sql_types::Integer;
    if let DbConn::Pg(c) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1, $2)")
            .bind::<Integer, _>(EVOLUTION_LOCK.0)
            .bind::<Integer, _>(EVOLUTION_LOCK.1)
            .execute(c)?;
    }
    Ok(())
}

/// One task type's stored population, decoded or why not; None if it has none yet.
pub fn load_population(
    conn: &mut DbConn,
    task_type: &str,
) -> Result<Option<Result<Population, HubError>>, HubError> {
    let state: Option<String> = populations::table
        .find(task_type)
        .select(populations::state)
        .first(conn)
        .optional()?;
    Ok(state.map(|s| serde_json::from_str(&s).map_err(|e| json_err("population", e))))
}

/// How many task types have a stored population.
pub fn count_populations(conn: &mut DbConn) -> Result<i64, HubError> {
    Ok(populations::table.count().get_result(conn)?)
}

pub fn save_population(
    conn: &mut DbConn,
    population: &Population,
    at: NaiveDateTime,
) -> Result<(), HubError> {
    let key = population.task_type.to_string();
    let state = serde_json::to_string(population).map_err(|e| HubError::Internal(e.to_string()))?;
    let updated = diesel::update(populations::table.find(&key))
        .set((
            populations::state.eq(&state),
            populations::updated_at.eq(at),
        ))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(populations::table)
            .values((
                populations::task_type.eq(&key),
                populations::state.eq(&state),
                populations::updated_at.eq(at),
            ))
            .execute(conn)?;
    }
    Ok(())
}
