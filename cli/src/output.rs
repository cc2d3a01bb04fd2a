//! Rendering answers for people (aligned tables) or for programs (JSON).
//!
//! Tables work on [`serde_json::Value`] so that a field the node adds later still shows up:
//! known fields come first in a fixed order, the rest follow alphabetically.

use clap::ValueEnum;
use serde_json::{Map, Value};
use std::fmt::Write as _;

/// How a query prints its answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned, human-readable tables.
    #[default]
    Table,
    /// The node's JSON, pretty-printed (one document on stdout).
    Json,
}

/// Pretty-printed JSON of `value`, with a trailing newline.
pub fn json(value: &Value) -> String {
    let mut s = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    s.push('\n');
    s
}

/// One scalar cell: strings bare, `null` as `-`, arrays of scalars comma-separated, anything
/// else as compact JSON.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) if n.is_f64() => n.as_f64().map_or_else(|| n.to_string(), decimal),
        Value::Array(items) if items.is_empty() => "-".to_string(),
        Value::Array(items) if items.iter().all(|v| !v.is_array() && !v.is_object()) => {
            items.iter().map(cell).collect::<Vec<_>>().join(", ")
        }
        other => other.to_string(),
    }
}

/// A float with at most three decimals and no trailing zeros (`0.140891` → `0.141`).
fn decimal(x: f64) -> String {
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// The keys of `map`: those in `preferred` that are present, in that order, then the others
/// alphabetically.
fn ordered_keys<'a>(map: &'a Map<String, Value>, preferred: &[&'a str]) -> Vec<&'a str> {
    let mut keys: Vec<&str> = preferred
        .iter()
        .copied()
        .filter(|k| map.contains_key(*k))
        .collect();
    let mut rest: Vec<&str> = map
        .keys()
        .map(String::as_str)
        .filter(|k| !preferred.contains(k))
        .collect();
    rest.sort_unstable();
    keys.extend(rest);
    keys
}

/// A two-column `field  value` table of one JSON object. A value that is not an object is
/// printed as a single cell.
pub fn fields(value: &Value, preferred: &[&str]) -> String {
    let Value::Object(map) = value else {
        return format!("{}\n", cell(value));
    };
    let keys = ordered_keys(map, preferred);
    let width = keys.iter().map(|k| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for key in keys {
        let _ = writeln!(out, "{key:<width$}  {}", cell(&map[key]));
    }
    out
}

/// A table with a header row of a JSON array of objects. Columns are the union of the objects'
/// keys (`preferred` first). An empty array prints `empty`.
pub fn rows(value: &Value, preferred: &[&str], empty: &str) -> String {
    let items: Vec<Value> = match value {
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    };
    if items.is_empty() {
        return format!("{empty}\n");
    }
    let mut union = Map::new();
    for item in &items {
        if let Value::Object(map) = item {
            for k in map.keys() {
                union.insert(k.clone(), Value::Null);
            }
        }
    }
    if union.is_empty() {
        // An array of scalars: one per line.
        return items.iter().map(|v| cell(v) + "\n").collect();
    }
    let columns = ordered_keys(&union, preferred);
    let table: Vec<Vec<String>> = items
        .iter()
        .map(|item| {
            columns
                .iter()
                .map(|c| item.get(*c).map_or_else(|| "-".to_string(), cell))
                .collect()
        })
        .collect();
    let header: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
    aligned(&header, &table)
}

/// Left-aligned columns separated by two spaces; no trailing spaces.
pub fn aligned(header: &[String], table: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in table {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header).chain(table.iter().map(Vec::as_slice)) {
        let mut line = String::new();
        for (i, (c, w)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let _ = write!(line, "{c:<w$}");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_put_preferred_keys_first() {
        let v = json!({"zeta": 1, "view": 7, "chain_id": "c", "alpha": null});
        assert_eq!(
            fields(&v, &["chain_id", "view", "missing"]),
            "chain_id  c\nview      7\nalpha     -\nzeta      1\n"
        );
    }

    #[test]
    fn rows_align_columns() {
        let v = json!([{"index": 0, "key": "abcdef"}, {"index": 10, "key": "a", "extra": true}]);
        assert_eq!(
            rows(&v, &["index", "key"], "none"),
            "INDEX  KEY     EXTRA\n0      abcdef  -\n10     a       true\n"
        );
        assert_eq!(rows(&json!([]), &[], "no peers"), "no peers\n");
    }

    #[test]
    fn cells() {
        assert_eq!(cell(&json!(["a", "b"])), "a, b");
        assert_eq!(cell(&json!([])), "-");
        assert_eq!(cell(&json!({"a": 1})), r#"{"a":1}"#);
        assert_eq!(cell(&json!(0.14089100000000002)), "0.141");
        assert_eq!(cell(&json!(2.0)), "2");
        assert_eq!(cell(&json!(12345678901u64)), "12345678901");
    }
}
