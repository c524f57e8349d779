//! Roles and the permissions they carry (concept §5).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a participant is in the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads and writes code, makes implementation decisions. At most one per session.
    Driver,
    /// Reads, runs tests, suggests and reviews.
    Navigator,
    /// Reads and comments.
    Observer,
}

/// A single right. The set a participant holds is fixed at join time, from its role unless given
/// explicitly.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    Read,
    Write,
    Execute,
    Suggest,
    Review,
    Comment,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Execute => "execute",
            Permission::Suggest => "suggest",
            Permission::Review => "review",
            Permission::Comment => "comment",
        }
    }
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Driver, Role::Navigator, Role::Observer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Driver => "driver",
            Role::Navigator => "navigator",
            Role::Observer => "observer",
        }
    }

    /// The permissions a role brings when none are given explicitly (concept §5).
    pub fn default_permissions(self) -> BTreeSet<Permission> {
        use Permission::*;
        match self {
            Role::Driver => [Read, Write, Execute].into(),
            Role::Navigator => [Read, Execute, Suggest, Review].into(),
            Role::Observer => [Read, Comment].into(),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?}, expected driver, navigator or observer"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_round_trips_through_text() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("pilot".parse::<Role>().is_err());
    }

    #[test]
    fn only_the_driver_writes_by_default() {
        assert!(
            Role::Driver
                .default_permissions()
                .contains(&Permission::Write)
        );
        assert!(
            !Role::Navigator
                .default_permissions()
                .contains(&Permission::Write)
        );
        assert!(
            !Role::Observer
                .default_permissions()
                .contains(&Permission::Write)
        );
        assert!(
            Role::Navigator
                .default_permissions()
                .contains(&Permission::Review)
        );
        assert!(
            Role::Observer
                .default_permissions()
                .contains(&Permission::Comment)
        );
    }
}
