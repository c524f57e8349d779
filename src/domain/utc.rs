//! One form for every timestamp the hub shows: RFC 3339 in UTC with a `Z`
//! (`2026-12-02T22:34:51.123456Z`). The hub keeps times as naive UTC (`NaiveDateTime`, what both
//! databases store); fields that serialize one use `#[serde(with = "crate::domain::utc")]` (or
//! `utc::option`). Reading accepts the `Z` form and the bare form older rows were written in.

use chrono::{DateTime, NaiveDateTime};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub fn serialize<S: Serializer>(t: &NaiveDateTime, s: S) -> Result<S::Ok, S::Error> {
    t.and_utc().serialize(s)
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDateTime, D::Error> {
    let text = String::deserialize(d)?;
    parse(&text)
        .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time")))
}

/// An RFC 3339 time (any offset, turned into UTC), or a bare `2026-12-02T22:34:51` taken as UTC.
pub fn parse(text: &str) -> Option<NaiveDateTime> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.naive_utc())
        .ok()
        .or_else(|| text.parse::<NaiveDateTime>().ok())
}

/// To the second, for messages people read (`2026-12-02T22:34:51Z`).
pub fn text(t: NaiveDateTime) -> String {
    t.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(t: &Option<NaiveDateTime>, s: S) -> Result<S::Ok, S::Error> {
        t.map(|t| t.and_utc()).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDateTime>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => parse(&text).map(Some).ok_or_else(|| {
                serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time"))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct T {
        #[serde(with = "super")]
        at: chrono::NaiveDateTime,
        #[serde(with = "super::option", default)]
        maybe: Option<chrono::NaiveDateTime>,
    }

    #[test]
    fn writes_z_and_reads_both_forms() {
        let at = crate::domain::now();
        let t = T {
            at,
            maybe: Some(at),
        };
        let v = serde_json::to_value(&t).unwrap();
        assert!(v["at"].as_str().unwrap().ends_with('Z'), "{v}");
        assert!(v["maybe"].as_str().unwrap().ends_with('Z'), "{v}");
        assert_eq!(serde_json::from_value::<T>(v).unwrap(), t);
        let old = json!({"at": at.to_string().replace(' ', "T"), "maybe": null});
        assert_eq!(serde_json::from_value::<T>(old).unwrap().at, at);
        assert!(serde_json::from_value::<T>(json!({"at": "abc"})).is_err());
    }
}
