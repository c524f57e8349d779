//! What creating a session asks for (`SessionSpec`, `ParticipantSpec`) and the rules a spec
//! must meet before anything is written: names, roles (one driver), permissions, intervals,
//! metadata size, the project key.

use std::collections::BTreeSet;

use serde_json::Value;

use super::DomainError;
use super::ids::{validate_ai_id, validate_session_name};
use super::role::{Permission, Role};
use super::session::{
    HandshakeMode, MAX_METADATA_BYTES, MAX_PARTICIPANTS, RotationPolicy, SAVE_INTERVAL_RANGE,
};
use super::task::Strategy;

/// A participant as asked for on create or join.
#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantSpec {
    pub ai_id: String,
    pub role: Role,
    /// `None`: the role's defaults.
    pub permissions: Option<BTreeSet<Permission>>,
    /// What it is good at, for skill-based task assignment.
    pub skills: Vec<String>,
}

/// A participant as a request names it, before default roles are given.
#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantRequest {
    pub ai_id: String,
    pub role: Option<Role>,
    pub permissions: Option<BTreeSet<Permission>>,
    pub skills: Vec<String>,
}

/// Gives roles to participants named without one: the first drives unless someone else was
/// named driver, the rest navigate (the concept's `["claude", "gemini"]`).
pub fn assign_default_roles(requests: Vec<ParticipantRequest>) -> Vec<ParticipantSpec> {
    let mut driver_named = requests.iter().any(|r| r.role == Some(Role::Driver));
    requests
        .into_iter()
        .map(|r| {
            let role = r.role.unwrap_or_else(|| {
                let role = if driver_named {
                    Role::Navigator
                } else {
                    Role::Driver
                };
                driver_named = true;
                role
            });
            ParticipantSpec {
                ai_id: r.ai_id,
                role,
                permissions: r.permissions,
                skills: r.skills,
            }
        })
        .collect()
}

/// Everything needed to create a session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSpec {
    pub name: String,
    pub participants: Vec<ParticipantSpec>,
    pub save_interval: u32,
    pub handshake_mode: HandshakeMode,
    pub rotation_policy: RotationPolicy,
    /// Automatic rotation: seconds per driver (0: never). People give minutes
    /// (`roleRotationInterval`, fractions allowed).
    pub rotation_interval_secs: u32,
    /// A handshake waiting this long for a reviewer raises an alert.
    pub review_timeout_secs: u32,
    /// How unassigned tasks find a participant (the concept's `taskAllocation`).
    pub task_allocation: Strategy,
    pub metadata: Value,
    /// The codebase the session works on (see [`validate_project`]).
    pub project: String,
    /// The genome the session runs under, its task type and where it came from.
    pub genome: super::genome::SessionGenome,
}

/// Bounds for the session's rotation interval (minutes) and review timeout (seconds).
pub const ROTATION_INTERVAL_RANGE: std::ops::RangeInclusive<u32> = 1..=24 * 3600;
pub const REVIEW_TIMEOUT_RANGE: std::ops::RangeInclusive<u32> = 1..=86_400;
pub const DEFAULT_REVIEW_TIMEOUT: u32 = 600;

/// The project a session belongs to when none is named.
pub const DEFAULT_PROJECT: &str = "default";
/// Longest project key, in characters.
pub const MAX_PROJECT_LEN: usize = 512;

/// A project key names a codebase: the repository's path (`/home/me/shop`) or remote
/// (`github.com/acme/shop`), or any label the team agrees on. Not empty, no control characters,
/// at most 512 characters; compared exactly (the hub does not resolve paths).
pub fn validate_project(project: &str) -> Result<(), DomainError> {
    if project.trim().is_empty() {
        return Err(DomainError::invalid("project", "project must not be empty"));
    }
    if project.chars().count() > MAX_PROJECT_LEN {
        return Err(DomainError::invalid(
            "project",
            format!("project is at most {MAX_PROJECT_LEN} characters"),
        ));
    }
    if project.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            "project",
            "project must not contain control characters",
        ));
    }
    Ok(())
}

impl SessionSpec {
    /// Checks a whole create request; on success every participant is valid and at most one drives.
    pub fn validate(&self) -> Result<(), DomainError> {
        validate_session_name(&self.name)?;
        validate_project(&self.project)?;
        self.genome.genome.validate()?;
        if self.rotation_interval_secs != 0
            && !ROTATION_INTERVAL_RANGE.contains(&self.rotation_interval_secs)
        {
            return Err(DomainError::invalid(
                "roleRotationInterval",
                "roleRotationInterval is minutes per driver: 0 (off), or from 1 second (0.017) to 24 hours (1440)",
            ));
        }
        if !REVIEW_TIMEOUT_RANGE.contains(&self.review_timeout_secs) {
            return Err(DomainError::invalid(
                "reviewTimeoutSecs",
                format!(
                    "reviewTimeoutSecs must be between {} and {}",
                    REVIEW_TIMEOUT_RANGE.start(),
                    REVIEW_TIMEOUT_RANGE.end()
                ),
            ));
        }
        if self.save_interval != 0 && !SAVE_INTERVAL_RANGE.contains(&self.save_interval) {
            return Err(DomainError::invalid(
                "saveInterval",
                format!(
                    "saveInterval must be 0 (off) or between {} and {} seconds",
                    SAVE_INTERVAL_RANGE.start(),
                    SAVE_INTERVAL_RANGE.end()
                ),
            ));
        }
        validate_metadata(&self.metadata)?;
        if self.participants.len() > MAX_PARTICIPANTS {
            return Err(DomainError::invalid(
                "participants",
                format!("a session holds at most {MAX_PARTICIPANTS} participants"),
            ));
        }
        let mut seen = BTreeSet::new();
        let mut driver: Option<&str> = None;
        for p in &self.participants {
            validate_participant(p)?;
            if !seen.insert(p.ai_id.as_str()) {
                return Err(DomainError::conflict(
                    "duplicate_participant",
                    format!("participant {:?} is listed twice", p.ai_id),
                ));
            }
            if p.role == Role::Driver {
                if let Some(first) = driver {
                    return Err(two_drivers(first, &p.ai_id));
                }
                driver = Some(&p.ai_id);
            }
        }
        Ok(())
    }
}

pub(super) fn validate_participant(p: &ParticipantSpec) -> Result<(), DomainError> {
    validate_ai_id("participants.aiId", &p.ai_id)?;
    if let Some(perms) = &p.permissions
        && perms.is_empty()
    {
        return Err(DomainError::invalid(
            "permissions",
            "permissions must not be empty; leave them out for the role's defaults",
        ));
    }
    Ok(())
}

fn validate_metadata(metadata: &Value) -> Result<(), DomainError> {
    if !metadata.is_object() {
        return Err(DomainError::invalid(
            "metadata",
            "metadata must be a JSON object",
        ));
    }
    if metadata.to_string().len() > MAX_METADATA_BYTES {
        return Err(DomainError::invalid(
            "metadata",
            format!("metadata is larger than {MAX_METADATA_BYTES} bytes"),
        ));
    }
    Ok(())
}

pub(super) fn two_drivers(current: &str, other: &str) -> DomainError {
    DomainError::conflict(
        "driver_taken",
        format!(
            "{current:?} already drives this session; {other:?} may join as navigator or observer and take control through the handshake"
        ),
    )
}

/// `roleRotationInterval` minutes (fractions allowed) as whole seconds; refuses what cannot be.
pub fn rotation_secs(minutes: Option<f64>) -> Result<u32, DomainError> {
    let Some(m) = minutes else { return Ok(0) };
    let secs = (m * 60.0).round();
    if !m.is_finite() || secs < 0.0 || secs > f64::from(*ROTATION_INTERVAL_RANGE.end()) {
        return Err(DomainError::invalid(
            "roleRotationInterval",
            "roleRotationInterval is minutes per driver: 0 (off) up to 1440",
        ));
    }
    Ok(secs as u32)
}
