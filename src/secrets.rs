//! Secrets: resolved from a dotenv-like `--secrets-file` or the environment, readable in
//! templates as `{{ secrets.NAME }}`, and never written anywhere. Everything drillbook writes
//! (journal, logs, progress lines, captured command output, reports, error messages) passes
//! through a [`Masker`] first; output that arrives in chunks goes through a [`StreamMasker`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Resolved secret values, by name. `Debug` shows the names only.
#[derive(Clone, Default)]
pub struct Secrets {
    values: BTreeMap<String, String>,
    masker: Masker,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("missing secrets: {} — set them in the environment or in --secrets-file", .names.join(", "))]
    Missing { names: Vec<String> },
    #[error("cannot read secrets file {}: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },
    // The line itself is never part of the message: a malformed line is most often a value that
    // lost its `KEY=`, and this message ends up in terminals and CI logs.
    #[error("secrets file {}, line {line}: {reason} (the line is not shown, it may hold a secret)", .path.display())]
    Malformed {
        path: PathBuf,
        line: usize,
        reason: &'static str,
    },
    #[error("the secret values are too large to build a masker for them")]
    TooLarge,
}

impl Secrets {
    /// Resolves every name in `names`. A non-empty value in `file` wins over the environment;
    /// an empty value is treated as not set in that source, so an empty `KEY=` line in the file
    /// falls back to the environment, and a secret empty in both is missing. All missing names
    /// are reported in one error. Keys in the file that are not in `names` are ignored.
    pub fn resolve(
        names: &[String],
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Secrets, SecretsError> {
        let from_file = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| SecretsError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                parse_file(&text, path)?
            }
            None => BTreeMap::new(),
        };
        let mut values = BTreeMap::new();
        let mut missing = Vec::new();
        for name in names {
            let value = from_file
                .get(name)
                .filter(|value| !value.is_empty())
                .cloned()
                .or_else(|| env(name).filter(|value| !value.is_empty()));
            match value {
                Some(value) => {
                    values.insert(name.clone(), value);
                }
                None => missing.push(name.clone()),
            }
        }
        if !missing.is_empty() {
            return Err(SecretsError::Missing { names: missing });
        }
        let masker = Masker::new(values.values().map(String::as_str))?;
        Ok(Secrets { values, masker })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// Name → value, for the `secrets` root of the template context.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.values
    }

    /// A masker for these values (cheap: the automaton is shared).
    pub fn masker(&self) -> Masker {
        self.masker.clone()
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Secrets")
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Parses a dotenv-like file: `KEY=VALUE` lines, `#` comments, blank lines, an optional
/// `export ` prefix, and values optionally in single quotes (literal) or double quotes
/// (`\"`, `\\` and `\n` escapes). Unquoted values end at a `#` preceded by whitespace, as in
/// dotenv; a value containing ` #` must be quoted. A key given twice keeps the last value, as
/// the shell would.
fn parse_file(text: &str, path: &Path) -> Result<BTreeMap<String, String>, SecretsError> {
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

/// `scheme://user:password@host` with the password masked, for passwords nobody declared as a
/// secret (written literally in a playbook or a `--var`): a URL's password is a secret anyway.
pub fn mask_url_passwords(text: &str) -> std::borrow::Cow<'_, str> {
    static URL_PASSWORD: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s/:@]*:)[^\s/@]+@")
            .expect("a valid pattern")
    });
    if !text.contains("://") {
        return std::borrow::Cow::Borrowed(text);
    }
    URL_PASSWORD.replace_all(text, format!("${{1}}{MASK}@"))
}

/// [`mask_url_passwords`] on every string of a JSON value.
pub fn mask_url_passwords_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(text) => {
            if let std::borrow::Cow::Owned(masked) = mask_url_passwords(text) {
                *text = masked;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask_url_passwords_json),
        serde_json::Value::Object(map) => map.values_mut().for_each(mask_url_passwords_json),
        _ => {}
    }
}

/// Replaces every occurrence of a secret value, and of its derived forms, with [`MASK`].
///
/// Derived forms, so that a secret is caught however it was rendered: the JSON-escaped and the
/// percent-encoded value, and for a URL with a password (`postgres://u:p%40ss@host/db`) the
/// password as written and percent-decoded (with their own escaped forms). Matching is
/// leftmost-longest, so a secret that contains another is masked whole. `Debug` shows only
/// how many needles there are.
#[derive(Clone, Default)]
pub struct Masker {
    /// `None` when there is nothing to mask.
    automaton: Option<AhoCorasick>,
    needles: Arc<[Vec<u8>]>,
    longest: usize,
}

impl Masker {
    /// A masker for `values`; empty values are ignored. Also for values that appear at run time
    /// (a rewritten connection string), which a fresh masker must cover.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Masker, SecretsError> {
        let mut needles = BTreeSet::new();
        for value in values {
            add_forms(&mut needles, value.as_bytes());
            if let Some(password) = url_password(value) {
                add_forms(&mut needles, password.as_bytes());
                add_forms(&mut needles, &percent_decode(password));
            }
        }
        needles.remove(&[][..]);
        if needles.is_empty() {
            return Ok(Masker::default());
        }
        let needles: Arc<[Vec<u8>]> = needles.into_iter().collect();
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(needles.iter())
            .map_err(|_| SecretsError::TooLarge)?;
        let longest = needles.iter().map(Vec::len).max().unwrap_or(0);
        Ok(Masker {
            automaton: Some(automaton),
            needles,
            longest,
        })
    }

    /// Whether there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.automaton.is_none()
    }

    pub fn mask(&self, text: &str) -> String {
        if self.automaton.is_none() {
            return text.to_string();
        }
        // A needle that is valid UTF-8 can only match on character boundaries of valid text;
        // only a percent-decoded password that is not UTF-8 could cut a character, and then the
        // lossy conversion still leaves the secret out.
        String::from_utf8(self.mask_bytes(text.as_bytes()))
            .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
    }

    pub fn mask_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        let Some(automaton) = &self.automaton else {
            return bytes.to_vec();
        };
        let mut out = Vec::with_capacity(bytes.len());
        let mut position = 0;
        for found in automaton.find_iter(bytes) {
            out.extend_from_slice(&bytes[position..found.start()]);
            out.extend_from_slice(MASK.as_bytes());
            position = found.end();
        }
        out.extend_from_slice(&bytes[position..]);
        out
    }

    /// Masks every string in `value`, object keys included. Numbers whose digits contain a
    /// secret (a PIN stored as a number) become the masked string. If masking makes two keys of
    /// one object equal, the later one wins: the record loses a field rather than leak.
    pub fn mask_json(&self, value: &mut serde_json::Value) {
        let Some(automaton) = &self.automaton else {
            return;
        };
        match value {
            serde_json::Value::String(text) => {
                if automaton.is_match(text.as_str()) {
                    *text = self.mask(text);
                }
            }
            serde_json::Value::Number(number) => {
                let text = number.to_string();
                if automaton.is_match(&text) {
                    *value = serde_json::Value::String(self.mask(&text));
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    self.mask_json(item);
                }
            }
            serde_json::Value::Object(map) => {
                if map.keys().any(|key| automaton.is_match(key.as_str())) {
                    for (key, mut item) in std::mem::take(map) {
                        self.mask_json(&mut item);
                        map.insert(self.mask(&key), item);
                    }
                } else {
                    for item in map.values_mut() {
                        self.mask_json(item);
                    }
                }
            }
            serde_json::Value::Null | serde_json::Value::Bool(_) => {}
        }
    }

    /// A masker for output that arrives in chunks.
    pub fn stream(&self) -> StreamMasker {
        StreamMasker {
            masker: self.clone(),
            pending: Vec::new(),
        }
    }

    /// Where the undecided tail of `buffer` starts: the earliest position from which the rest
    /// of the buffer is a proper prefix of some needle, so more bytes could still make (or
    /// lengthen) a match there. Everything before it can be masked and written now.
    fn undecided_from(&self, buffer: &[u8]) -> usize {
        let earliest = buffer.len().saturating_sub(self.longest.saturating_sub(1));
        (earliest..buffer.len())
            .find(|&start| {
                let tail = &buffer[start..];
                self.needles
                    .iter()
                    .any(|needle| needle.len() > tail.len() && needle.starts_with(tail))
            })
            .unwrap_or(buffer.len())
    }
}

impl fmt::Debug for Masker {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Masker")
            .field("needles", &self.needles.len())
            .finish_non_exhaustive()
    }
}

/// Masks a byte stream (a child's stdout) chunk by chunk. Holds back only a tail that could be
/// the start of a secret, so a secret split across chunks is still masked, and output that
/// cannot be part of one is written at once. The result is what [`Masker::mask_bytes`] gives
/// for the whole stream.
#[derive(Debug)]
pub struct StreamMasker {
    masker: Masker,
    pending: Vec<u8>,
}

impl StreamMasker {
    /// What can safely be written now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let Some(automaton) = &self.masker.automaton else {
            return chunk.to_vec();
        };
        self.pending.extend_from_slice(chunk);
        let buffer = std::mem::take(&mut self.pending);
        let limit = self.masker.undecided_from(&buffer);
        let mut out = Vec::with_capacity(limit);
        let mut position = 0;
        // Every needle that starts before `limit` lies wholly inside the buffer, so the
        // leftmost-longest choice there is the one the whole stream would give.
        for found in automaton.find_iter(&buffer) {
            if found.start() >= limit {
                break;
            }
            out.extend_from_slice(&buffer[position..found.start()]);
            out.extend_from_slice(MASK.as_bytes());
            position = found.end();
        }
        let written = position.max(limit);
        out.extend_from_slice(&buffer[position..written]);
        self.pending = buffer[written..].to_vec();
        out
    }

    /// The held-back rest, masked.
    pub fn finish(self) -> Vec<u8> {
        self.masker.mask_bytes(&self.pending)
    }
}

/// Adds `value` and the forms rendering may give it: JSON-escaped (in a serialized record) and
/// percent-encoded (in a URL, or through the `urlencode` filter).
fn add_forms(needles: &mut BTreeSet<Vec<u8>>, value: &[u8]) {
    if value.is_empty() {
        return;
    }
    needles.insert(value.to_vec());
    if let Ok(text) = std::str::from_utf8(value) {
        let json = serde_json::Value::String(text.to_string()).to_string();
        if let Some(inner) = json
            .strip_prefix('"')
            .and_then(|json| json.strip_suffix('"'))
        {
            needles.insert(inner.as_bytes().to_vec());
        }
    }
    needles.insert(percent_encode(value).into_bytes());
}

/// The password of `scheme://user:password@host/...`, as written. The authority ends at the
/// first `/`, `?` or `#`, and the userinfo at the last `@` before it, as URL parsers do.
fn url_password(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once("://")?;
    let mut scheme_chars = scheme.chars();
    let valid_scheme = scheme_chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme_chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !valid_scheme {
        return None;
    }
    let authority = rest.find(['/', '?', '#']).map_or(rest, |end| &rest[..end]);
    let (userinfo, _host) = authority.rsplit_once('@')?;
    let (_user, password) = userinfo.split_once(':')?;
    Some(password)
}

/// Decodes `%XX`; a `%` not followed by two hex digits is kept as it is.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let decoded = (bytes[index] == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match decoded {
            Some(byte) => {
                out.push(byte);
                index += 3;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    out
}

/// Encodes every byte but the unreserved ones (`A-Z a-z 0-9 - . _ ~`).
fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &byte in bytes {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::Write;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| name.to_string()).collect()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn secrets_file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(text.as_bytes()).expect("write");
        file
    }

    fn masker(values: &[&str]) -> Masker {
        Masker::new(values.iter().copied()).expect("masker")
    }

    #[test]
    fn file_wins_over_environment() {
        let file = secrets_file("A=from-file\n");
        let env = |name: &str| Some(format!("env-{name}"));
        let secrets = Secrets::resolve(&names(&["A", "B"]), Some(file.path()), env).expect("ok");
        assert_eq!(secrets.get("A"), Some("from-file"));
        assert_eq!(secrets.get("B"), Some("env-B"));
        assert_eq!(secrets.get("C"), None);
        assert_eq!(secrets.names().collect::<Vec<_>>(), ["A", "B"]);
        assert_eq!(secrets.as_map().len(), 2);
    }

    #[test]
    fn all_missing_names_are_reported_at_once() {
        let file = secrets_file("EMPTY_IN_FILE=\nPRESENT=x\n");
        let env = |name: &str| (name == "EMPTY_IN_ENV").then(String::new);
        let error = Secrets::resolve(
            &names(&["A", "PRESENT", "EMPTY_IN_FILE", "EMPTY_IN_ENV"]),
            Some(file.path()),
            env,
        )
        .expect_err("missing");
        assert_eq!(
            error.to_string(),
            "missing secrets: A, EMPTY_IN_FILE, EMPTY_IN_ENV — set them in the environment or in --secrets-file"
        );
    }

    #[test]
    fn empty_file_value_falls_back_to_environment() {
        let file = secrets_file("A=\n");
        let env = |_: &str| Some("from-env".to_string());
        let secrets = Secrets::resolve(&names(&["A"]), Some(file.path()), env).expect("ok");
        assert_eq!(secrets.get("A"), Some("from-env"));
    }

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
        let secrets = Secrets::resolve(&all, Some(file.path()), no_env).expect("ok");
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
        let secrets = Secrets::resolve(&names(&["A"]), Some(file.path()), no_env).expect("ok");
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
                Secrets::resolve(&names(&["OK"]), Some(file.path()), no_env).expect_err(text);
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

    #[test]
    fn unreadable_file_names_the_path() {
        let directory = tempfile::tempdir().expect("dir");
        let path = directory.path().join("absent.env");
        let error = Secrets::resolve(&names(&["A"]), Some(&path), no_env).expect_err("absent");
        assert!(matches!(error, SecretsError::Read { .. }));
        assert!(error.to_string().contains("absent.env"), "{error}");
    }

    #[test]
    fn debug_shows_names_not_values() {
        let env = |_: &str| Some("hunter2".to_string());
        let secrets = Secrets::resolve(&names(&["DB_PASSWORD"]), None, env).expect("ok");
        let debug = format!("{secrets:?} {:?}", secrets.masker());
        assert!(debug.contains("DB_PASSWORD"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn masks_every_occurrence() {
        let env = |name: &str| Some(format!("{name}-value"));
        let secrets = Secrets::resolve(&names(&["TOKEN"]), None, env).expect("ok");
        let masker = secrets.masker();
        assert_eq!(
            masker.mask("a TOKEN-value and TOKEN-valueTOKEN-value."),
            "a *** and ******."
        );
        assert_eq!(masker.mask("nothing here"), "nothing here");
    }

    #[test]
    fn longest_secret_wins() {
        let masker = masker(&["abc", "abcdef", "cde"]);
        assert_eq!(masker.mask("xabcdefx"), "x***x");
        assert_eq!(masker.mask("xabcdx"), "x***dx");
        assert_eq!(masker.mask("xbcdex"), "xb***x");
    }

    #[test]
    fn empty_values_are_ignored() {
        let masker = masker(&["", "s3cret"]);
        assert_eq!(masker.mask("a s3cret b"), "a *** b");
        let nothing = self::masker(&[""]);
        assert_eq!(nothing.mask("abc"), "abc");
    }

    #[test]
    fn masks_url_password_encoded_and_decoded() {
        let masker =
            masker(&["postgres://admin:p%40ss%2Fw0rd@db.internal:5432/app?sslmode=require"]);
        let text = "PGPASSWORD=p@ss/w0rd url=postgres://admin:p%40ss%2Fw0rd@db.internal:5432/app";
        let masked = masker.mask(text);
        assert_eq!(
            masked,
            "PGPASSWORD=*** url=postgres://admin:***@db.internal:5432/app"
        );
        // The user and host are not secrets and stay readable.
        assert!(masker.mask("admin@db.internal").contains("admin"));
    }

    #[test]
    fn url_password_parsing() {
        assert_eq!(url_password("redis://:pw@cache:6379/0"), Some("pw"));
        assert_eq!(url_password("https://user:a:b@host/path@x"), Some("a:b"));
        assert_eq!(url_password("postgres://user@host/db"), None);
        assert_eq!(url_password("https://host/p?user=a:b@c"), None);
        assert_eq!(url_password("not a url: x@y"), None);
        assert_eq!(percent_decode("a%40b%zz%4"), b"a@b%zz%4");
    }

    #[test]
    fn masks_escaped_and_encoded_forms() {
        let masker = masker(&["pa\"ss w/rd"]);
        let json = serde_json::json!({ "value": "pa\"ss w/rd" }).to_string();
        assert!(!masker.mask(&json).contains("ss w"), "{json}");
        assert_eq!(masker.mask("x=pa%22ss%20w%2Frd"), "x=***");
    }

    #[test]
    fn masks_json_strings_keys_and_numbers() {
        let masker = masker(&["hunter2", "4711"]);
        let mut value = serde_json::json!({
            "password": "hunter2",
            "nested": [{ "hunter2-key": "x hunter2 y" }, 12, "plain"],
            "pin": 4711,
            "port": 5432,
        });
        masker.mask_json(&mut value);
        assert_eq!(
            value,
            serde_json::json!({
                "password": "***",
                "nested": [{ "***-key": "x *** y" }, 12, "plain"],
                "pin": "***",
                "port": 5432,
            })
        );
    }

    #[test]
    fn mask_keeps_non_secret_unicode() {
        let masker = masker(&["sécret"]);
        assert_eq!(masker.mask("→ sécret ←"), "→ *** ←");
    }

    fn stream_all(masker: &Masker, chunks: &[&[u8]]) -> Vec<u8> {
        let mut stream = masker.stream();
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend(stream.push(chunk));
        }
        out.extend(stream.finish());
        out
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack
            .windows(needle.len())
            .any(|window| window == needle)
    }

    #[test]
    fn stream_masks_secrets_split_at_every_boundary() {
        let secrets = ["hunter2", "hunter2hunter3", "postgres://u:p%40ss@h/db"];
        let masker = masker(&secrets);
        let text: &[u8] =
            b"start hunter2 mid hunter2hunter3 hunt p@ss postgres://u:p%40ss@h/db p%40ss hunter2";
        let expected = masker.mask_bytes(text);
        assert!(!contains(&expected, b"hunter2"));
        assert!(!contains(&expected, b"p@ss"));
        for split in 0..=text.len() {
            let (first, second) = text.split_at(split);
            assert_eq!(
                stream_all(&masker, &[first, second]),
                expected,
                "split at {split}"
            );
        }
        for first_split in 0..=text.len() {
            for second_split in first_split..=text.len() {
                let chunks = [
                    &text[..first_split],
                    &text[first_split..second_split],
                    &text[second_split..],
                ];
                assert_eq!(
                    stream_all(&masker, &chunks),
                    expected,
                    "splits at {first_split} and {second_split}"
                );
            }
        }
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(stream_all(&masker, &bytes), expected, "byte by byte");
    }

    #[test]
    fn stream_holds_back_only_a_possible_secret_start() {
        let masker = masker(&["hunter2"]);
        let mut stream = masker.stream();
        assert_eq!(stream.push(b"progress 50%\n"), b"progress 50%\n");
        assert_eq!(stream.push(b"password: hun"), b"password: ");
        assert_eq!(stream.push(b"ter"), b"");
        assert_eq!(stream.push(b"2 done hu"), b"*** done ");
        assert_eq!(stream.push(b"man"), b"human");
        assert_eq!(stream.push(b" hunt"), b" ");
        assert_eq!(stream.finish(), b"hunt");
    }

    #[test]
    fn stream_passes_non_utf8_bytes() {
        let masker = masker(&["hunter2"]);
        let text: &[u8] = b"\xff\xfe hunter2 \x80";
        for split in 0..=text.len() {
            let (first, second) = text.split_at(split);
            assert_eq!(stream_all(&masker, &[first, second]), b"\xff\xfe *** \x80");
        }
        let nothing = Masker::default();
        assert_eq!(stream_all(&nothing, &[b"\xffa", b"b"]), b"\xffab");
    }

    #[test]
    fn url_passwords_are_masked_even_when_undeclared() {
        assert_eq!(
            mask_url_passwords("redis://:hunter2@cache:6379/0 and postgres://app:pw@db/x"),
            "redis://:***@cache:6379/0 and postgres://app:***@db/x"
        );
        assert_eq!(
            mask_url_passwords("postgres://app@db/x s3://bucket/a:b@c"),
            "postgres://app@db/x s3://bucket/a:b@c"
        );
        let mut value = serde_json::json!({"url": "https://u:p@h/", "n": [1, "x://a:b@c"]});
        mask_url_passwords_json(&mut value);
        assert_eq!(
            value,
            serde_json::json!({"url": "https://u:***@h/", "n": [1, "x://a:***@c"]})
        );
    }
}
