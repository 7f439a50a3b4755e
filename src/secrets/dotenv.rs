//! The `--secrets-file` syntax: dotenv-like `KEY=VALUE` lines.

use std::collections::BTreeMap;
use std::path::Path;

use super::SecretsError;

/// Parses a dotenv-like file: `KEY=VALUE` lines, `#` comments, blank lines, an optional
/// `export ` prefix, and values optionally in single quotes (literal) or double quotes
/// (`\"`, `\\` and `\n` escapes). Unquoted values end at a `#` preceded by whitespace, as in
/// dotenv; a value containing ` #` must be quoted. A key given twice keeps the last value, as
/// the shell would.
pub(super) fn parse_file(
    text: &str,
    path: &Path,
) -> Result<BTreeMap<String, String>, SecretsError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut values = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let malformed = |reason| SecretsError::Malformed {
            path: path.to_path_buf(),
            line: index + 1,
            reason,
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = match line.strip_prefix("export") {
            Some(rest) if rest.starts_with(char::is_whitespace) => rest.trim_start(),
            _ => line,
        };
        let Some((key, raw)) = line.split_once('=') else {
            return Err(malformed("expected KEY=VALUE"));
        };
        let key = key.trim_end();
        if !is_name(key) {
            return Err(malformed(
                "the name before `=` is not a valid variable name",
            ));
        }
        let value = parse_value(raw.trim_start()).map_err(malformed)?;
        values.insert(key.to_string(), value);
    }
    Ok(values)
}

fn is_name(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(raw: &str) -> Result<String, &'static str> {
    let (value, rest) = if let Some(quoted) = raw.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let mut end = None;
        while let Some((index, c)) = chars.next() {
            match c {
                '"' => {
                    end = Some(index + 1);
                    break;
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, escaped @ ('"' | '\\'))) => value.push(escaped),
                    Some((_, other)) => {
                        value.push('\\');
                        value.push(other);
                    }
                    None => break,
                },
                other => value.push(other),
            }
        }
        let end = end.ok_or("unterminated double quote")?;
        (value, &quoted[end..])
    } else if let Some(quoted) = raw.strip_prefix('\'') {
        let end = quoted.find('\'').ok_or("unterminated single quote")?;
        (quoted[..end].to_string(), &quoted[end + 1..])
    } else {
        let end = raw
            .char_indices()
            .find(|&(index, c)| c == '#' && raw[..index].ends_with(char::is_whitespace))
            .map_or(raw.len(), |(index, _)| index);
        return Ok(raw[..end].trim_end().to_string());
    };
    let rest = rest.trim_start();
    if rest.is_empty() || rest.starts_with('#') {
        Ok(value)
    } else {
        Err("unexpected text after the closing quote")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Secrets;
    use crate::secrets::tests::{names, no_env, secrets_file};

    #[test]
    fn parses_dotenv_syntax() {
        let file = secrets_file(concat!(
            "\u{feff}# a comment\n",
            "\n",
            "PLAIN=plain value  \r\n",
            "export EXPORTED=yes\n",
            "  SPACED  =  spaced\n",
            "SINGLE='it is # not a comment'\n",
            "DOUBLE=\"a \\\"quoted\\\" \\\\ line\\nnext\" # comment\n",
            "INLINE=abc #comment\n",
            "HASH=pa#ss\n",
            "EQUALS=a=b=c\n",
            "export=named export\n",
            "TWICE=first\n",
            "TWICE=second\n",
        ));
        let all = names(&[
            "PLAIN", "EXPORTED", "SPACED", "SINGLE", "DOUBLE", "INLINE", "HASH", "EQUALS",
            "export", "TWICE",
        ]);
        let secrets = Secrets::resolve(&all, Some(file.path()), no_env, None).expect("ok");
        assert_eq!(secrets.get("PLAIN"), Some("plain value"));
        assert_eq!(secrets.get("EXPORTED"), Some("yes"));
        assert_eq!(secrets.get("SPACED"), Some("spaced"));
        assert_eq!(secrets.get("SINGLE"), Some("it is # not a comment"));
        assert_eq!(secrets.get("DOUBLE"), Some("a \"quoted\" \\ line\nnext"));
        assert_eq!(secrets.get("INLINE"), Some("abc"));
        assert_eq!(secrets.get("HASH"), Some("pa#ss"));
        assert_eq!(secrets.get("EQUALS"), Some("a=b=c"));
        assert_eq!(secrets.get("export"), Some("named export"));
        assert_eq!(secrets.get("TWICE"), Some("second"));
    }

    #[test]
    fn single_quotes_are_literal() {
        let file = secrets_file("A='a\\nb \"c\"' # comment\n");
        let secrets =
            Secrets::resolve(&names(&["A"]), Some(file.path()), no_env, None).expect("ok");
        assert_eq!(secrets.get("A"), Some("a\\nb \"c\""));
    }

    #[test]
    fn malformed_lines_name_file_and_line_but_not_the_value() {
        let cases = [
            "OK=1\n\nhunter2-no-equals\n",
            "OK=1\n\n9hunter2=value\n",
            "OK=1\n\nA=\"hunter2 unterminated\n",
            "OK=1\n\nA='hunter2 unterminated\n",
            "OK=1\n\nA=\"quoted\"hunter2\n",
        ];
        for text in cases {
            let file = secrets_file(text);
            let error =
                Secrets::resolve(&names(&["OK"]), Some(file.path()), no_env, None).expect_err(text);
            let message = error.to_string();
            assert!(
                matches!(error, SecretsError::Malformed { line: 3, .. }),
                "{message}"
            );
            assert!(
                message.contains(&file.path().display().to_string()),
                "{message}"
            );
            assert!(message.contains("line 3"), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
    }
}
