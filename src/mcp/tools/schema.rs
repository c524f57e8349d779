//! Tool input schemas, generated from the request types and compacted: every model that
//! connects pays for these bytes.

use schemars::JsonSchema;
use serde_json::{Value, json};

/// A JSON schema for `T`, compacted: every model that connects pays for these bytes.
pub(super) fn schema<T: JsonSchema>() -> Value {
    let mut v = serde_json::to_value(schemars::schema_for!(T)).unwrap_or_else(|_| json!({}));
    let defs = v
        .as_object_mut()
        .and_then(|o| o.remove("$defs"))
        .unwrap_or_else(|| json!({}));
    compact(&mut v, &defs);
    strip_closed(&mut v);
    if let Some(o) = v.as_object_mut() {
        o.remove("$schema");
        o.remove("title");
        // The request type's doc comment is for developers; the tool's description is the
        // catalogue's.
        o.remove("description");
        o.entry("type").or_insert(json!("object"));
    }
    v
}

/// Drops `additionalProperties: false` everywhere (inlined definitions bring it back after
/// `compact` looked).
fn strip_closed(node: &mut Value) {
    match node {
        Value::Object(o) => {
            if o.get("additionalProperties") == Some(&Value::Bool(false)) {
                o.remove("additionalProperties");
            }
            o.values_mut().for_each(strip_closed);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_closed),
        _ => {}
    }
}

/// Inlines `$ref`s, turns `oneOf` of constants into `enum`, drops `null` alternatives (optional
/// fields are simply not `required`), integer formats, the doc comments of shared types, and
/// `additionalProperties: false` (the hub still refuses unknown fields, naming them; the
/// listing need not say so on every object).
fn compact(node: &mut Value, defs: &Value) {
    let Some(o) = node.as_object_mut() else {
        if let Some(items) = node.as_array_mut() {
            items.iter_mut().for_each(|i| compact(i, defs));
        }
        return;
    };
    if o.get("additionalProperties") == Some(&Value::Bool(false)) {
        o.remove("additionalProperties");
    }
    if let Some(name) = o
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
    {
        let mut def = defs.get(name).cloned().unwrap_or_else(|| json!({}));
        if let Some(d) = def.as_object_mut() {
            d.remove("description");
        }
        o.remove("$ref");
        if let Some(d) = def.as_object() {
            for (k, v) in d {
                o.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    for key in ["anyOf", "oneOf"] {
        let Some(Value::Array(alts)) = o.get(key) else {
            continue;
        };
        let consts: Option<Vec<Value>> = alts.iter().map(|a| a.get("const").cloned()).collect();
        let non_null: Vec<Value> = alts
            .iter()
            .filter(|a| a.get("type") != Some(&json!("null")))
            .cloned()
            .collect();
        if let Some(consts) = consts {
            o.remove(key);
            o.insert("type".into(), json!("string"));
            o.insert("enum".into(), Value::Array(consts));
        } else if non_null.len() == 1 && alts.len() == 2 {
            o.remove(key);
            if let Value::Object(inner) = &non_null[0] {
                for (k, v) in inner {
                    o.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            return compact(node, defs); // the inlined alternative may hold more to compact
        }
    }
    if let Some(Value::Array(types)) = o.get("type") {
        let kept: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        let kept = match kept.len() {
            1 => kept[0].clone(),
            _ => Value::Array(kept),
        };
        o.insert("type".into(), kept);
    }
    // The `format` keyword is a string; a property named `format` (session export) is kept.
    if o.get("format").is_some_and(Value::is_string) {
        o.remove("format");
        if o.get("minimum") == Some(&json!(0)) {
            o.remove("minimum");
        }
    }
    // `true` ("anything") is valid JSON Schema, but clients validate property and item schemas
    // as objects: say it as `{}`.
    if let Some(Value::Object(props)) = o.get_mut("properties") {
        for v in props.values_mut().filter(|v| v.is_boolean()) {
            *v = json!({});
        }
    }
    if let Some(items) = o.get_mut("items").filter(|v| v.is_boolean()) {
        *items = json!({});
    }
    for v in o.values_mut() {
        compact(v, defs);
    }
}
