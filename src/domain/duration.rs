//! Durations as people and the concept write them, read in one place: seconds (`30`, `"30"`),
//! with a unit (`"30s"`, `"5m"`, `"1h"`), or the concept's `"estimated_30s"`. Checkpoint
//! estimates, task estimates and lock leases all go through here, each with its own bound.

use serde_json::Value;

use super::DomainError;

/// Seconds in `v`, between 1 and `max_secs`; errors name `field`.
pub fn parse(v: &Value, field: &'static str, max_secs: u32) -> Result<u32, DomainError> {
    let bad = || {
        DomainError::invalid(
            field,
            format!(
                "{field}: seconds, or \"30s\", \"5m\", \"1h\", \"estimated_30s\" (1 s to {max_secs} s)"
            ),
        )
    };
    let secs = match v {
        Value::Number(n) => n.as_u64().ok_or_else(bad)?,
        Value::String(s) => {
            let s = s.trim();
            let s = s.strip_prefix("estimated_").unwrap_or(s);
            let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
                Some((i, _)) => s.split_at(i),
                None => (s, "s"),
            };
            let n: u64 = num.parse().map_err(|_| bad())?;
            let factor = match unit.trim() {
                "s" | "sec" | "secs" => 1,
                "m" | "min" | "mins" => 60,
                "h" => 3600,
                _ => return Err(bad()),
            };
            n.checked_mul(factor).ok_or_else(bad)?
        }
        _ => return Err(bad()),
    };
    if secs == 0 || secs > u64::from(max_secs) {
        return Err(bad());
    }
    Ok(secs as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_written_form() {
        for (v, secs) in [
            (json!(30), 30),
            (json!("30"), 30),
            (json!("30s"), 30),
            (json!("5m"), 300),
            (json!("1h"), 3600),
            (json!("estimated_30s"), 30),
            (json!(" estimated_5m "), 300),
        ] {
            assert_eq!(parse(&v, "duration", 4 * 3600).unwrap(), secs, "{v}");
        }
        for bad in [
            json!(0),
            json!("0s"),
            json!("5d"),
            json!("estimated_"),
            json!(-3),
            json!(1.5),
            json!(null),
        ] {
            let err = parse(&bad, "estimatedDuration", 4 * 3600).unwrap_err();
            assert!(
                matches!(
                    err,
                    DomainError::Invalid {
                        field: "estimatedDuration",
                        ..
                    }
                ),
                "{bad}"
            );
        }
        assert!(parse(&json!("5h"), "duration", 4 * 3600).is_err());
    }
}
