//! `${VAR}` and `${VAR:-default}` interpolation on raw config text, before TOML parsing.
//!
//! A value substituted inside a one-line TOML basic string (`"..."`) is escaped for TOML
//! (`\` → `\\`, `"` → `\"`, control characters → `\uXXXX`), so secrets holding quotes or
//! backslashes parse as written. Anywhere else (bare values, literal `'...'` strings,
//! multi-line strings, comments) the value is pasted verbatim. Defaults are always pasted
//! verbatim: they are TOML written by the file's author. The substitutions are recorded so
//! a parse error can be located in the raw file and scrubbed of substituted values.

use std::ops::Range;

/// One `${...}` replaced by a value from the environment (not a default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Substitution {
    /// Byte range of the pasted text in the interpolated output.
    pub out: Range<usize>,
    /// Byte offset of the `$` of the `${...}` in the raw text.
    pub raw_start: usize,
    /// Byte length of the whole `${...}` in the raw text.
    pub raw_len: usize,
    /// The value as looked up (before any TOML escaping).
    pub value: String,
}

/// Interpolated text plus where the environment values went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Interpolated {
    /// The text to parse as TOML.
    pub text: String,
    /// Every environment substitution, in order of appearance.
    pub substitutions: Vec<Substitution>,
}

impl Interpolated {
    /// Maps a byte offset in the interpolated text back to the raw text: offsets inside a
    /// substitution map to the `$` of its `${...}`.
    pub fn raw_offset(&self, out_offset: usize) -> usize {
        let mut delta: isize = 0;
        for sub in &self.substitutions {
            if out_offset < sub.out.start {
                break;
            }
            if out_offset < sub.out.end {
                return sub.raw_start;
            }
            delta += sub.raw_len as isize - sub.out.len() as isize;
        }
        out_offset.saturating_add_signed(delta)
    }

    /// Replaces every substituted value (raw and as `{:?}` would print it) in `message`
    /// with `<redacted>`, longest first.
    pub fn scrub(&self, message: &str) -> String {
        let mut values: Vec<String> = self
            .substitutions
            .iter()
            .flat_map(|sub| {
                let debug = format!("{:?}", sub.value);
                let debug = debug[1..debug.len() - 1].to_owned();
                [sub.value.clone(), debug, escape_basic(&sub.value)]
            })
            .filter(|value| !value.is_empty())
            .collect();
        values.sort_by_key(|value| std::cmp::Reverse(value.len()));
        values.dedup();
        let mut out = message.to_owned();
        for value in values {
            out = out.replace(&value, "<redacted>");
        }
        out
    }
}

/// Replaces `${NAME}` with `lookup(NAME)` and `${NAME:-default}` with the value or the
/// default when unset or empty. `$${` is a literal `${`. Errors name every variable that
/// is unset without a default. Values inside one-line basic strings are TOML-escaped
/// (see the module docs).
pub fn interpolate(raw: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    interpolate_mapped(raw, lookup).map(|interpolated| interpolated.text)
}

/// Where the scanner is in the raw TOML text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lexical {
    Outside,
    Comment,
    Basic,
    MultiBasic,
    Literal,
    MultiLiteral,
}

/// [`interpolate`], also recording each substitution (see [`Interpolated`]).
pub(crate) fn interpolate_mapped(
    raw: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Interpolated, String> {
    let mut out = String::with_capacity(raw.len());
    let mut substitutions = Vec::new();
    let mut missing = Vec::new();
    let mut state = Lexical::Outside;
    let mut i = 0;
    while i < raw.len() {
        let rest = &raw[i..];
        if rest.starts_with("$${") {
            out.push_str("${");
            i += 3;
            continue;
        }
        if let Some(body_start) = rest.strip_prefix("${") {
            let Some(end) = body_start.find('}') else {
                return Err("unterminated ${ in config".to_owned());
            };
            let body = &body_start[..end];
            let (name, default) = match body.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (body, None),
            };
            match (lookup(name).filter(|v| !v.is_empty()), default) {
                (Some(value), _) => {
                    let start = out.len();
                    if state == Lexical::Basic {
                        out.push_str(&escape_basic(&value));
                    } else {
                        out.push_str(&value);
                    }
                    substitutions.push(Substitution {
                        out: start..out.len(),
                        raw_start: i,
                        raw_len: end + 3,
                        value,
                    });
                }
                (None, Some(default)) => out.push_str(default),
                (None, None) => missing.push(name.to_owned()),
            }
            i += end + 3;
            continue;
        }
        let Some(c) = rest.chars().next() else { break };
        let mut len = c.len_utf8();
        state = match (state, c) {
            (Lexical::Outside, '#') => Lexical::Comment,
            (Lexical::Outside, '"') if rest.starts_with("\"\"\"") => {
                len = 3;
                Lexical::MultiBasic
            }
            (Lexical::Outside, '"') => Lexical::Basic,
            (Lexical::Outside, '\'') if rest.starts_with("'''") => {
                len = 3;
                Lexical::MultiLiteral
            }
            (Lexical::Outside, '\'') => Lexical::Literal,
            (Lexical::Comment | Lexical::Basic | Lexical::Literal, '\n') => Lexical::Outside,
            (Lexical::Basic | Lexical::MultiBasic, '\\') => {
                // An escape: the next character (if any, and not a `$`) is part of it.
                if let Some(next) = rest[1..].chars().next().filter(|next| *next != '$') {
                    len += next.len_utf8();
                }
                state
            }
            (Lexical::Basic, '"') | (Lexical::Literal, '\'') => Lexical::Outside,
            (Lexical::MultiBasic, '"') if rest.starts_with("\"\"\"") => {
                len = 3;
                Lexical::Outside
            }
            (Lexical::MultiLiteral, '\'') if rest.starts_with("'''") => {
                len = 3;
                Lexical::Outside
            }
            (state, _) => state,
        };
        out.push_str(&rest[..len]);
        i += len;
    }
    if missing.is_empty() {
        Ok(Interpolated {
            text: out,
            substitutions,
        })
    } else {
        Err(format!(
            "unset variables without default: {}",
            missing.join(", ")
        ))
    }
}

/// Escapes `value` for the inside of a TOML basic string: `\\`, `\"`, and control
/// characters (U+0000–U+001F, U+007F) as `\uXXXX` (TOML 1.0, "String").
fn escape_basic(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if c.is_control() && (c <= '\u{1f}' || c == '\u{7f}') => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_values_defaults_and_escapes() {
        let lookup = |name: &str| (name == "SET").then(|| "v".to_owned());
        assert_eq!(
            interpolate("a=${SET} b=${UNSET:-d} c=$${SET} d=$5", lookup).unwrap(),
            "a=v b=d c=${SET} d=$5"
        );
    }

    #[test]
    fn names_every_missing_variable() {
        let error = interpolate("${A} ${B}", |_| None).unwrap_err();
        assert!(error.contains("A, B"), "{error}");
    }

    #[test]
    fn values_inside_basic_strings_are_escaped_for_toml() {
        let lookup = |_: &str| Some("a\"b\\c\td".to_owned());
        let raw = "x = \"p=${V}\"\ny = ${V}\nz = 'l${V}'\n# c ${V}\nw = \"q\\\"${V}\"\n";
        let text = interpolate(raw, lookup).unwrap();
        assert_eq!(
            text,
            "x = \"p=a\\\"b\\\\c\\u0009d\"\ny = a\"b\\c\td\nz = 'la\"b\\c\td'\n\
             # c a\"b\\c\td\nw = \"q\\\"a\\\"b\\\\c\\u0009d\"\n"
        );
        let parsed: toml::Table =
            toml::from_str(&interpolate("x = \"${V}\"\nw = \"q\\\"${V}\"", lookup).unwrap())
                .unwrap();
        assert_eq!(parsed["x"].as_str(), Some("a\"b\\c\td"));
        assert_eq!(parsed["w"].as_str(), Some("q\"a\"b\\c\td"));
    }

    #[test]
    fn offsets_map_back_to_the_raw_text() {
        let lookup = |_: &str| Some("long-value".to_owned());
        let raw = "a = ${V}\nb = 1";
        let mapped = interpolate_mapped(raw, lookup).unwrap();
        let out_b = mapped.text.find('b').unwrap();
        assert_eq!(mapped.raw_offset(out_b), raw.find('b').unwrap());
        assert_eq!(mapped.raw_offset(5), 4, "inside the value maps to its ${{");
        assert_eq!(mapped.scrub("bad long-value here"), "bad <redacted> here");
    }
}
