//! `${VAR}` and `${VAR:-default}` interpolation on raw config text, before TOML parsing.

/// Replaces `${NAME}` with `lookup(NAME)` and `${NAME:-default}` with the value or the
/// default when unset or empty. `$${` is a literal `${`. Errors name every variable that
/// is unset without a default.
pub fn interpolate(raw: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut missing = Vec::new();
    let mut rest = raw;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        if let Some(stripped) = after.strip_prefix("${") {
            out.push_str("${");
            rest = stripped;
            continue;
        }
        let Some(body_start) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = body_start.find('}') else {
            return Err("unterminated ${ in config".to_owned());
        };
        let body = &body_start[..end];
        let (name, default) = match body.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (body, None),
        };
        match (lookup(name).filter(|v| !v.is_empty()), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => missing.push(name.to_owned()),
        }
        rest = &body_start[end + 1..];
    }
    out.push_str(rest);
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "unset variables without default: {}",
            missing.join(", ")
        ))
    }
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
}
