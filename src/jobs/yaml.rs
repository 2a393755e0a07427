//! Writes job documents as YAML that both YAML 1.2 readers (steward) and YAML 1.1 readers
//! (Rundeck's SnakeYAML) read back as the same values.
//!
//! Why not the YAML crate's own emitter: it quotes only what YAML 1.2 would misread, so the text
//! `yes` or `12:30` comes out bare, and SnakeYAML reads those as the boolean true and the number
//! 750. This writer quotes every plain scalar that could be a boolean, null or number in either
//! version, and otherwise writes what the crate would: block mappings and sequences, two-space
//! indent, literal blocks for multi-line text.

use std::fmt::Write as _;

use serde_json::Value;

/// The value as a YAML document.
pub(crate) fn to_string(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Array(items) if !items.is_empty() => write_sequence(&mut out, items, 0),
        Value::Object(map) if !map.is_empty() => write_mapping(&mut out, map, 0, false),
        scalar => {
            write_scalar(&mut out, scalar, 2);
            out.push('\n');
        }
    }
    out
}

/// Characters no plain or literal scalar may carry: YAML reads them as line breaks, byte
/// order marks or not at all.
fn is_special(c: char) -> bool {
    c.is_control() || matches!(c, '\u{feff}' | '\u{2028}' | '\u{2029}')
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// Writes `items` as `- item` lines at column `col`.
fn write_sequence(out: &mut String, items: &[Value], col: usize) {
    for item in items {
        indent(out, col);
        out.push_str("- ");
        write_inline_start(out, item, col + 2);
    }
}

/// Writes `map` as `key: value` lines at column `col`; with `continued`, the first key goes on
/// the current line (after a `- `).
fn write_mapping(out: &mut String, map: &serde_json::Map<String, Value>, col: usize, continued: bool) {
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 || !continued {
            indent(out, col);
        }
        write_plain_or_quoted(out, key);
        out.push(':');
        match value {
            Value::Object(m) if !m.is_empty() => {
                out.push('\n');
                write_mapping(out, m, col + 2, false);
            }
            // Sequences under a key sit at the key's column, as most YAML writers put them.
            Value::Array(items) if !items.is_empty() => {
                out.push('\n');
                write_sequence(out, items, col);
            }
            scalar => {
                out.push(' ');
                write_scalar(out, scalar, col + 2);
                out.push('\n');
            }
        }
    }
}

/// Writes a node that starts right after `- `, its further lines at column `col`.
fn write_inline_start(out: &mut String, value: &Value, col: usize) {
    match value {
        Value::Object(m) if !m.is_empty() => write_mapping(out, m, col, true),
        Value::Array(items) if !items.is_empty() => {
            // The first nested item shares the line; the rest line up under it.
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    indent(out, col);
                }
                out.push_str("- ");
                write_inline_start(out, item, col + 2);
            }
        }
        scalar => {
            write_scalar(out, scalar, col);
            out.push('\n');
        }
    }
}

/// Writes a scalar (or an empty collection) on the current line; a literal block's lines go
/// at column `col`.
fn write_scalar(out: &mut String, value: &Value, col: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) if s.contains('\n') && literal_ok(s) => write_literal(out, s, col),
        Value::String(s) => write_plain_or_quoted(out, s),
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
    }
}

/// A literal block keeps text exactly, except for what its rules cannot carry: carriage
/// returns and other control characters, and trailing blanks on a line.
fn literal_ok(s: &str) -> bool {
    !s.chars().any(|c| is_special(c) && c != '\n' && c != '\t')
        && s.split('\n').all(|line| !line.ends_with([' ', '\t']))
        && !s.starts_with('\t')
}

fn write_literal(out: &mut String, s: &str, col: usize) {
    out.push('|');
    // The indentation indicator is needed when the first line itself starts with a space.
    if s.starts_with(' ') {
        out.push('2');
    }
    // Chomping: `-` strips the final line break, none keeps one, `+` keeps them all.
    out.push_str(match s.len() - s.trim_end_matches('\n').len() {
        0 => "-",
        1 => "",
        _ => "+",
    });
    for line in s.strip_suffix('\n').unwrap_or(s).split('\n') {
        out.push('\n');
        if !line.is_empty() {
            indent(out, col);
            out.push_str(line);
        }
    }
}

/// Whether YAML 1.1 or 1.2 could read `s`, written bare, as something other than this text.
fn needs_quotes(s: &str) -> bool {
    const SPECIAL_WORDS: &[&str] = &[
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false", "False", "FALSE",
        "on", "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL", "~",
    ];
    let Some(first) = s.chars().next() else { return true };
    SPECIAL_WORDS.contains(&s)
        // Numbers of either version (ints, floats, octal, hex, sexagesimal 1:30, .inf, .nan).
        || first.is_ascii_digit()
        || (matches!(first, '-' | '+' | '.') && s[1..].starts_with(|c: char| c.is_ascii_digit() || c == '.'))
        || s.starts_with(".inf") || s.starts_with(".Inf") || s.starts_with(".INF")
        || s.starts_with(".nan") || s.starts_with(".NaN") || s.starts_with(".NAN")
        // Indicators that start something else than text.
        || "-?:,[]{}#&*!|>'\"%@`<=".contains(first) && !(first == '-' && s.len() > 1 && !s.starts_with("- ") && s != "---")
        || s.starts_with(' ')
        || s.ends_with([' ', ':'])
        || s.contains(": ")
        || s.contains(" #")
        || s.chars().any(is_special)
}

fn write_plain_or_quoted(out: &mut String, s: &str) {
    if !needs_quotes(s) {
        out.push_str(s);
    } else if !s.chars().any(is_special) {
        out.push('\'');
        out.push_str(&s.replace('\'', "''"));
        out.push('\'');
    } else {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if is_special(c) => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn round_trip(v: &Value) -> Value {
        let text = to_string(v);
        serde_norway::from_str(&text).unwrap_or_else(|e| panic!("cannot read back:\n{text}\n{e}"))
    }

    #[test]
    fn words_and_numbers_that_yaml_1_1_would_misread_are_quoted() {
        for s in ["yes", "No", "on", "OFF", "y", "~", "null", "12:30", "0755", "1_000", "-5", "+1", ".5", ".inf", "1e3"]
        {
            let text = to_string(&json!({ "v": s }));
            assert_eq!(text, format!("v: '{s}'\n"), "{s}");
        }
        for s in ["hello", "a-b", "-v --fast", "x: y", "#tag", "'quoted'", "- item", "key:", "a #b", "@x", "*", ""] {
            let v = json!({ "v": s });
            assert_eq!(round_trip(&v), v, "{s:?} reads back:\n{}", to_string(&v));
        }
        assert_eq!(to_string(&json!({"v": "-v --fast"})), "v: -v --fast\n", "an option flag stays readable");
    }

    #[test]
    fn multi_line_text_is_a_literal_block_that_reads_back_exactly() {
        for s in ["#!/bin/bash\necho hi", "two\nlines\n", "ends\nwith blanks\n\n\n", " starts\nwith a space", "a\n\nb"]
        {
            let v = json!([{ "script": s, "n": 1 }]);
            assert_eq!(round_trip(&v), v, "{s:?}:\n{}", to_string(&v));
        }
        assert_eq!(to_string(&json!({"s": "a\nb"})), "s: |-\n  a\n  b\n");
        // What a literal block cannot hold is written double-quoted.
        for s in ["trailing \nspace", "cr\r\nlf", "bell\u{7}", "line\u{2028}separator"] {
            let v = json!({ "s": s });
            assert!(to_string(&v).starts_with("s: \""), "{s:?}");
            assert_eq!(round_trip(&v), v, "{s:?}");
        }
    }

    #[test]
    fn nested_collections_read_back() {
        let v = json!([
            {"a": [1, [2, 3], {"b": []}, {}], "c": {"d": {"e": null}}, "f": [], "g": {}},
            [["x"]],
            "scalar",
            true
        ]);
        assert_eq!(round_trip(&v), v, "\n{}", to_string(&v));
        assert_eq!(round_trip(&json!("top")), json!("top"));
        assert_eq!(to_string(&json!([])), "[]\n");
    }
}
