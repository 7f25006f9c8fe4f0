//! Key templates: `"product:<id>:<user.name>"` → literal text and placeholders.

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Text written into the key as it is.
    Lit(String),
    /// `<a.b.c>`: an argument (`a`, or `self`) and a path of fields on it.
    Placeholder(Vec<String>),
}

/// Parses a template. The error is a message for the whole literal (stable
/// Rust cannot point inside a string literal).
pub(crate) fn parse(template: &str) -> Result<Vec<Segment>, String> {
    // Argument values are escaped with `\`; a literal one could undo that
    // (`"k:<a>\\:<b>"` would give ("x:", "") and ("x", ":") one key).
    if template.contains('\\') {
        return Err(format!(
            "key template {template:?} may not contain `\\`: argument values are escaped with it, \
             so a literal one could let different arguments produce the same key"
        ));
    }
    let mut segments = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('<') {
        if open > 0 {
            segments.push(Segment::Lit(rest[..open].to_owned()));
        }
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else {
            return Err(format!(
                "unclosed `<` in key template {template:?}; a placeholder is written `<name>`, with `name` an argument of the function"
            ));
        };
        let inner = &after[..close];
        if inner.contains('<') {
            return Err(format!(
                "unclosed `<` in key template {template:?}; placeholders cannot nest"
            ));
        }
        let path: Vec<String> = inner.split('.').map(|s| s.trim().to_owned()).collect();
        // The root is an argument; later parts are fields, named or numbered.
        let valid = |(i, part): &(usize, &String)| is_ident(part) || (*i > 0 && is_index(part));
        if let Some((_, bad)) = path.iter().enumerate().find(|p| !valid(p)) {
            return Err(format!(
                "invalid placeholder `<{inner}>` in key template {template:?}: `{bad}` is not an identifier; \
                 expected `<arg>` or a field path such as `<arg.field>`"
            ));
        }
        segments.push(Segment::Placeholder(path));
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        segments.push(Segment::Lit(rest.to_owned()));
    }
    check_separated(template, &segments)?;
    Ok(segments)
}

/// Two placeholders must be separated by text containing `:`; otherwise
/// `"<a>-<b>"` would give `a="1-2", b="3"` and `a="1", b="2-3"` the same key.
fn check_separated(template: &str, segments: &[Segment]) -> Result<(), String> {
    let mut previous: Option<&[String]> = None;
    for segment in segments {
        match segment {
            Segment::Placeholder(path) => {
                if let Some(prev) = previous {
                    return Err(format!(
                        "placeholders `<{}>` and `<{}>` in key template {template:?} must be separated by text \
                         containing `:`, so that different arguments can never produce the same key",
                        prev.join("."),
                        path.join(".")
                    ));
                }
                previous = Some(path);
            }
            Segment::Lit(text) if text.contains(':') => previous = None,
            Segment::Lit(_) => {}
        }
    }
    Ok(())
}

fn is_index(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
        && s != "_"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> Segment {
        Segment::Lit(s.into())
    }

    fn ph(path: &[&str]) -> Segment {
        Segment::Placeholder(path.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn rejects_a_literal_escape() {
        assert!(parse(r"k:<a>\:<b>").unwrap_err().contains("may not contain"));
    }

    #[test]
    fn parses_literals_and_placeholders() {
        assert_eq!(parse("product:<id>").unwrap(), vec![lit("product:"), ph(&["id"])]);
        assert_eq!(
            parse("<self.tenant>:u:<user.id>:v2").unwrap(),
            vec![
                ph(&["self", "tenant"]),
                lit(":u:"),
                ph(&["user", "id"]),
                lit(":v2")
            ]
        );
        assert_eq!(parse("static").unwrap(), vec![lit("static")]);
        assert_eq!(parse("p:<pair.0>").unwrap(), vec![lit("p:"), ph(&["pair", "0"])]);
        assert_eq!(parse("").unwrap(), vec![]);
    }

    #[test]
    fn rejects_malformed_placeholders() {
        assert!(parse("p:<id").unwrap_err().contains("unclosed `<`"));
        assert!(parse("p:<a<b>").unwrap_err().contains("unclosed `<`"));
        assert!(parse("p:<>").unwrap_err().contains("not an identifier"));
        assert!(parse("p:<1a>").unwrap_err().contains("not an identifier"));
        assert!(parse("p:<a.>").unwrap_err().contains("not an identifier"));
        assert!(parse("p:<0.a>").unwrap_err().contains("not an identifier"));
    }

    #[test]
    fn requires_a_separator_between_placeholders() {
        assert!(parse("<a><b>").unwrap_err().contains("separated"));
        assert!(parse("<a>-<b>").unwrap_err().contains("separated"));
        assert!(parse("<a>-:<b>").is_ok());
        assert!(parse("<a>:x:<b>").is_ok());
    }
}
