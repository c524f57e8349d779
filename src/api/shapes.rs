//! Argument shapes several operations share, each accepting every form the concept and our
//! own surfaces use.

use std::borrow::Cow;
use std::collections::BTreeSet;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::actors::messages::Since;
use crate::domain::role::{Permission, Role};
use crate::domain::session::{ParticipantRequest, ParticipantSpec, assign_default_roles};
use crate::error::HubError;

/// Where something starts: an event id (`42`, `"42"`) or an RFC 3339 time
/// (`"2026-12-02T10:00:00Z"`), as the concept's `/context/diff/:aiId/:timestamp` takes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SinceArg(pub Since);

impl<'de> Deserialize<'de> for SinceArg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let bad = |shown: &str| {
            D::Error::custom(format!(
                "{shown} is neither an event id nor an RFC 3339 time"
            ))
        };
        match Value::deserialize(d)? {
            Value::Number(n) => match n.as_i64() {
                Some(id) if id >= 0 => Ok(SinceArg(Since::Event(id))),
                _ => Err(bad(&n.to_string())),
            },
            Value::String(text) => {
                if let Ok(id) = text.trim().parse::<i64>() {
                    return if id >= 0 {
                        Ok(SinceArg(Since::Event(id)))
                    } else {
                        Err(bad(&format!("{text:?}")))
                    };
                }
                chrono::DateTime::parse_from_rfc3339(text.trim())
                    .map(|t| SinceArg(Since::Time(t.with_timezone(&chrono::Utc))))
                    .map_err(|_| bad(&format!("{text:?}")))
            }
            other => Err(bad(&other.to_string())),
        }
    }
}

impl JsonSchema for SinceArg {
    fn schema_name() -> Cow<'static, str> {
        "Since".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": ["integer", "string"] })
    }
}

/// `participants` at create: a list of ids (`["claude", "gemini"]`: the first drives, the others
/// navigate), a list of `{aiId, role?, permissions?, skills?}`, or the concept's map
/// `{"claude": {"role": "driver", "permissions": [...]}}`. Kept as given and read by
/// [`Participants::specs`], whose errors name the exact entry (`participants[1].role`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Participants(pub Option<Value>);

impl JsonSchema for Participants {
    fn schema_name() -> Cow<'static, str> {
        "Participants".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": ["array", "object"],
            "description": "aiIds (first drives), [{aiId, role?, permissions?, skills?}], or {aiId: {role?, permissions?}}"
        })
    }
}

impl Participants {
    /// The participants with their roles settled (unnamed roles: the first drives).
    pub fn specs(self) -> Result<Vec<ParticipantSpec>, HubError> {
        let mut out = Vec::new();
        match self.0 {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.into_iter().enumerate() {
                    let at = format!("participants[{i}]");
                    out.push(match item {
                        Value::String(ai_id) => bare(ai_id),
                        Value::Object(mut o) => {
                            let id = o.remove("aiId").or_else(|| o.remove("id")).ok_or_else(
                                || HubError::Invalid {
                                    code: "missing_field",
                                    message: format!("{at}.aiId is required"),
                                    field: Some(format!("{at}.aiId")),
                                },
                            )?;
                            let id = typed::<String>(id, &format!("{at}.aiId"))?;
                            entry(id, o, &at)?
                        }
                        _ => {
                            return Err(HubError::invalid(
                                at,
                                "each participant is an id string or an object {aiId, role?, permissions?}",
                            ));
                        }
                    });
                }
            }
            Some(Value::Object(map)) => {
                for (id, cfg) in map {
                    let at = format!("participants.{id}");
                    match cfg {
                        Value::Object(o) => out.push(entry(id, o, &at)?),
                        Value::Null => out.push(bare(id)),
                        _ => return Err(HubError::invalid(at, "expected {role?, permissions?}")),
                    }
                }
            }
            Some(_) => {
                return Err(HubError::invalid(
                    "participants",
                    "participants is a list of ids, a list of {aiId, role}, or a map id → {role}",
                ));
            }
        }
        Ok(assign_default_roles(out))
    }
}

fn bare(ai_id: String) -> ParticipantRequest {
    ParticipantRequest {
        ai_id,
        role: None,
        permissions: None,
        skills: Vec::new(),
    }
}

fn entry(id: String, mut o: Map<String, Value>, at: &str) -> Result<ParticipantRequest, HubError> {
    let role = o
        .remove("role")
        .map(|v| typed::<Role>(v, &format!("{at}.role")))
        .transpose()?;
    let permissions = o
        .remove("permissions")
        .map(|v| typed::<BTreeSet<Permission>>(v, &format!("{at}.permissions")))
        .transpose()?;
    let skills = o
        .remove("skills")
        .map(|v| typed::<Vec<String>>(v, &format!("{at}.skills")))
        .transpose()?
        .unwrap_or_default();
    o.remove("endpoint"); // the concept's config names the MCP endpoint; every endpoint is equal here
    if let Some(unknown) = o.keys().next() {
        return Err(HubError::invalid(
            format!("{at}.{unknown}"),
            format!("unknown field {unknown:?}; expected aiId, role, permissions, skills"),
        ));
    }
    Ok(ParticipantRequest {
        ai_id: id,
        role,
        permissions,
        skills,
    })
}

fn typed<T: serde::de::DeserializeOwned>(v: Value, field: &str) -> Result<T, HubError> {
    serde_json::from_value(v).map_err(|e| HubError::invalid(field, format!("{field}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn since_takes_ids_and_times() {
        let ok = |v: Value| serde_json::from_value::<SinceArg>(v).unwrap().0;
        assert_eq!(ok(json!(7)), Since::Event(7));
        assert_eq!(ok(json!("7")), Since::Event(7));
        assert!(matches!(ok(json!("2026-12-02T10:00:00Z")), Since::Time(_)));
        assert!(matches!(
            ok(json!("2026-12-02T11:00:00+01:00")),
            Since::Time(_)
        ));
        for bad in [
            json!("abc"),
            json!(-1),
            json!("-1"),
            json!(1.5),
            json!(true),
        ] {
            assert!(
                serde_json::from_value::<SinceArg>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn participants_in_three_shapes() {
        let roles = |v: Value| -> Vec<(String, Role)> {
            Participants(Some(v))
                .specs()
                .unwrap()
                .into_iter()
                .map(|p| (p.ai_id, p.role))
                .collect()
        };
        let expected = vec![
            ("claude".to_owned(), Role::Driver),
            ("gemini".to_owned(), Role::Navigator),
        ];
        assert_eq!(roles(json!(["claude", "gemini"])), expected);
        assert_eq!(
            roles(json!([{"aiId": "claude"}, {"aiId": "gemini", "role": "navigator"}])),
            expected
        );
        assert_eq!(
            roles(json!({"claude": {"role": "driver"}, "gemini": {"role": "navigator"}})),
            expected
        );
        let err = Participants(Some(json!([{"aiId": "a", "role": "boss"}])))
            .specs()
            .unwrap_err();
        assert_eq!(err.field(), Some("participants[0].role"));
    }
}
