use super::rows::*;
use super::*;

/// `schema.rs` as diesel sees it: table → columns.
fn schema_tables() -> BTreeMap<String, Vec<String>> {
    let text = include_str!("../schema.rs");
    let mut tables = BTreeMap::new();
    let mut current: Option<(String, Vec<String>)> = None;
    for line in text.lines().map(str::trim) {
        if let Some((name, cols)) = current.as_mut() {
            if line == "}" {
                tables.insert(name.clone(), std::mem::take(cols));
                current = None;
            } else if let Some((col, _)) = line.split_once("->") {
                cols.push(col.trim().to_owned());
            }
            continue;
        }
        if line.ends_with('{')
            && line.contains('(')
            && let Some(name) = line.split_whitespace().next()
        {
            current = Some((name.to_owned(), Vec::new()));
        }
    }
    tables
}

#[test]
fn check_schema_covers_every_table() {
    let mut schema = schema_tables();
    assert!(schema.len() >= 11, "parsed schema.rs: {schema:?}");
    for hub_wide in HUB_WIDE_TABLES.iter().chain(&DERIVED_TABLES) {
        assert!(
            schema.remove(*hub_wide).is_some(),
            "{hub_wide} is in schema.rs"
        );
    }
    let ours: BTreeMap<String, Vec<String>> = TABLES
        .iter()
        .map(|t| {
            (
                t.name().to_owned(),
                t.columns().iter().map(|c| (*c).to_owned()).collect(),
            )
        })
        .collect();
    for (table, columns) in &schema {
        assert_eq!(
            ours.get(table),
            Some(columns),
            "backup.rs must carry table {table} with exactly the columns of schema.rs"
        );
    }
    assert_eq!(
        ours.len(),
        schema.len(),
        "backup.rs names a table schema.rs lacks"
    );
    assert_eq!(TABLES[0].name(), "sessions", "parents first");
}

#[test]
fn timestamps_are_microsecond_rfc3339() {
    let t = chrono::NaiveDate::from_ymd_opt(2026, 12, 3)
        .unwrap()
        .and_hms_micro_opt(10, 11, 12, 5)
        .unwrap();
    assert_eq!(ts::text(&t), "2026-12-03T10:11:12.000005Z");
    assert_eq!(ts::parse("2026-12-03T10:11:12.000005Z"), Some(t));
    assert_eq!(ts::parse("2026-12-03T11:11:12.000005999+01:00"), Some(t));
    assert_eq!(ts::parse("2026-12-03 10:11:12"), None);
}

#[test]
fn rows_must_carry_every_column_and_no_other() {
    let good = serde_json::json!({"session_id": "s", "message_id": 1, "ai_id": "a", "read_at": null, "acked_at": "2026-12-03T10:11:12.000000Z", "delivered_at": null, "shown_at": null, "shown_via": null});
    assert!(serde_json::from_value::<ReceiptRow>(good.clone()).is_ok());
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("read_at");
    let err = serde_json::from_value::<ReceiptRow>(missing).unwrap_err();
    assert!(err.to_string().contains("read_at"), "{err}");
    let mut extra = good;
    extra["x"] = 1.into();
    assert!(serde_json::from_value::<ReceiptRow>(extra).is_err());
    let blob = serde_json::json!({"id": "x", "session_id": "s", "event_id": 1, "created_at": "2026-12-03T10:11:12.000000Z", "encoding": "json", "context": "e30=", "trigger": "auto"});
    let row: ContextSnapshotRow = serde_json::from_value(blob.clone()).unwrap();
    assert_eq!(row.context, b"{}");
    assert_eq!(serde_json::to_value(&row).unwrap(), blob);
}

#[test]
fn numbers_are_grouped() {
    assert_eq!(grouped(0), "0");
    assert_eq!(grouped(999), "999");
    assert_eq!(grouped(12_345), "12,345");
    assert_eq!(grouped(1_234_567), "1,234,567");
}
