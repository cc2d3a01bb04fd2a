//! Rendering answers for people (aligned tables) or for programs (JSON).
//!
//! Tables work on [`serde_json::Value`] so that a field the node adds later still shows up:
//! known fields come first in a fixed order, the rest follow alphabetically.
//!
//! Nothing a node returns reaches the terminal raw: keys, values, peer strings and error
//! messages may hold whatever a client stored or a peer sent, and an escape sequence in them
//! could retitle, clear or rewrite the operator's terminal. [`escape`] writes every control
//! character (C0 including ESC, DEL, C1) and every Unicode bidirectional override or isolate
//! as a visible escape; tables escape every cell and key, JSON output escapes the same
//! characters as JSON `\uXXXX` (so it still decodes to the node's exact strings), and
//! [`crate::emit`] and the error line pass through it as a last guard.

use clap::ValueEnum;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal as is: a control character (C0, DEL, C1) or a
/// bidirectional formatting character that can reorder what is displayed.
fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every unsafe character (see [`is_unsafe`]) written visibly: `\n`, `\r`, `\t`, and
/// `\u{1b}`-style escapes (Rust notation, hexadecimal code point) for the rest. Other text,
/// backslashes included, is unchanged; escaping twice is the same as once.
pub fn escape(s: &str) -> Cow<'_, str> {
    escape_with(s, |c, out| match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    })
}

/// A whole output text (several lines) made safe: like [`escape`] but line breaks stay.
pub fn escape_lines(s: &str) -> Cow<'_, str> {
    escape_with(s, |c, out| match c {
        '\n' => out.push('\n'),
        c => out.push_str(&escape(c.encode_utf8(&mut [0; 4]))),
    })
}

/// Serialized JSON with every unsafe character that serde_json leaves raw (DEL, C1, bidi
/// controls; it escapes C0 itself) written as a JSON `\uXXXX` escape. Outside strings JSON
/// text is ASCII without controls, so only string contents change, and they decode the same.
fn escape_json(s: &str) -> Cow<'_, str> {
    escape_with(s, |c, out| match c {
        '\n' => out.push('\n'),
        c => {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        }
    })
}

fn escape_with(s: &str, mut render: impl FnMut(char, &mut String)) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if is_unsafe(c) {
            render(c, &mut out);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

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
    let s = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    let mut s = escape_json(&s).into_owned();
    s.push('\n');
    s
}

/// One scalar cell: strings bare, `null` as `-`, arrays of scalars comma-separated, anything
/// else as compact JSON; [`escape`]d.
pub fn cell(value: &Value) -> String {
    let text = match value {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) if n.is_f64() => n.as_f64().map_or_else(|| n.to_string(), decimal),
        Value::Array(items) if items.is_empty() => "-".to_string(),
        Value::Array(items) if items.iter().all(|v| !v.is_array() && !v.is_object()) => {
            items.iter().map(cell).collect::<Vec<_>>().join(", ")
        }
        other => other.to_string(),
    };
    escape(&text).into_owned()
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
    let shown: Vec<Cow<'_, str>> = keys.iter().map(|k| escape(k)).collect();
    let width = shown.iter().map(|k| k.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for (key, name) in keys.iter().zip(&shown) {
        let _ = writeln!(out, "{name:<width$}  {}", cell(&map[*key]));
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

/// Left-aligned columns separated by two spaces; no trailing spaces. Every header and cell is
/// [`escape`]d.
pub fn aligned(header: &[String], table: &[Vec<String>]) -> String {
    let header: Vec<String> = header.iter().map(|h| escape(h).into_owned()).collect();
    let table: Vec<Vec<String>> = table
        .iter()
        .map(|row| row.iter().map(|c| escape(c).into_owned()).collect())
        .collect();
    let (header, table) = (header.as_slice(), table.as_slice());
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
    fn control_characters_are_escaped_everywhere() {
        let nasty = "a\u{1b}]0;t\u{7}b\u{9b}2J\u{7f}\r\n\t\u{202e}c\\d";
        let shown = r"a\u{1b}]0;t\u{7}b\u{9b}2J\u{7f}\r\n\t\u{202e}c\d";
        assert_eq!(escape(nasty), shown);
        assert_eq!(escape(shown), shown);
        assert!(matches!(escape("plain ünïcode"), Cow::Borrowed(_)));
        assert_eq!(escape_lines("x\u{1b}\ny\r\n"), "x\\u{1b}\ny\\r\n");
        assert_eq!(cell(&json!(nasty)), shown);
        assert_eq!(cell(&json!([nasty])), shown);
        assert_eq!(
            fields(&json!({ (nasty): nasty }), &[]),
            format!("{shown}  {shown}\n")
        );
        let table = rows(&json!([{ (nasty): 1 }]), &[], "none");
        assert!(
            table.chars().all(|c| c == '\n' || !is_unsafe(c)),
            "{table:?}"
        );
        let text = json(&json!({ "k": nasty }));
        assert!(text.chars().all(|c| c == '\n' || !is_unsafe(c)), "{text:?}");
        assert!(
            text.contains(r"\u009b") && text.contains(r"\u202e"),
            "{text}"
        );
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["k"], nasty);
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
