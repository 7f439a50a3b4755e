//! Masking resolved secret values, and their derived forms, in everything drillbook writes:
//! whole texts, JSON values, and output that arrives in chunks.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, RwLock};

use aho_corasick::{AhoCorasick, MatchKind};

use super::url::{percent_decode, percent_encode, url_password};
use super::{MASK, SHORTEST_MASKED, SecretsError};

/// Replaces every occurrence of a secret value, and of its derived forms, with [`MASK`].
///
/// Derived forms, so that a secret is caught however it was rendered: the JSON-escaped and the
/// percent-encoded value, and for a URL with a password (`postgres://u:p%40ss@host/db`) the
/// password as written and percent-decoded (with their own escaped forms). Matching is
/// leftmost-longest, so a secret that contains another is masked whole. `Debug` shows only
/// how many needles there are.
#[derive(Clone, Default)]
pub struct Masker {
    /// Shared by every clone, so a value added during a run (one derived from a secret by a
    /// template) is masked everywhere from then on.
    shared: Arc<RwLock<Arc<Needles>>>,
}

/// The values to mask, compiled.
#[derive(Default)]
struct Needles {
    /// `None` when there is nothing to mask.
    automaton: Option<AhoCorasick>,
    needles: Vec<Vec<u8>>,
    longest: usize,
}

impl Needles {
    fn build(needles: BTreeSet<Vec<u8>>) -> Result<Needles, SecretsError> {
        let needles: Vec<Vec<u8>> = needles.into_iter().filter(|n| !n.is_empty()).collect();
        if needles.is_empty() {
            return Ok(Needles::default());
        }
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(needles.iter())
            .map_err(|_| SecretsError::TooLarge)?;
        let longest = needles.iter().map(Vec::len).max().unwrap_or(0);
        Ok(Needles {
            automaton: Some(automaton),
            needles,
            longest,
        })
    }
}

impl Masker {
    /// A masker for `values`; empty values are ignored. Also for values that appear at run time
    /// (a rewritten connection string), which a fresh masker must cover.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Masker, SecretsError> {
        let mut needles = BTreeSet::new();
        for value in values {
            add_value(&mut needles, value);
        }
        Ok(Masker {
            shared: Arc::new(RwLock::new(Arc::new(Needles::build(needles)?))),
        })
    }

    /// Masks `value` too from now on, in this masker and every clone of it: a value derived
    /// from a secret while the run goes on. Adding a value already masked costs nothing.
    pub fn add(&self, value: &str) {
        let current = self.current();
        if value.is_empty()
            || current
                .needles
                .iter()
                .any(|needle| needle.as_slice() == value.as_bytes())
        {
            return;
        }
        let mut needles: BTreeSet<Vec<u8>> = current.needles.iter().cloned().collect();
        add_value(&mut needles, value);
        if let (Ok(built), Ok(mut shared)) = (Needles::build(needles), self.shared.write()) {
            *shared = Arc::new(built);
        }
    }

    fn current(&self) -> Arc<Needles> {
        self.shared
            .read()
            .map(|needles| needles.clone())
            .unwrap_or_default()
    }

    /// Whether there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.current().automaton.is_none()
    }

    pub fn mask(&self, text: &str) -> String {
        if self.is_empty() {
            return text.to_string();
        }
        // A needle that is valid UTF-8 can only match on character boundaries of valid text;
        // only a percent-decoded password that is not UTF-8 could cut a character, and then the
        // lossy conversion still leaves the secret out.
        String::from_utf8(self.mask_bytes(text.as_bytes()))
            .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
    }

    pub fn mask_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        let current = self.current();
        let Some(automaton) = &current.automaton else {
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
        let current = self.current();
        let Some(automaton) = &current.automaton else {
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
    fn undecided_from(needles: &Needles, buffer: &[u8]) -> usize {
        let earliest = buffer
            .len()
            .saturating_sub(needles.longest.saturating_sub(1));
        (earliest..buffer.len())
            .find(|&start| {
                let tail = &buffer[start..];
                needles
                    .needles
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
            .field("needles", &self.current().needles.len())
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
        let current = self.masker.current();
        let Some(automaton) = &current.automaton else {
            return chunk.to_vec();
        };
        self.pending.extend_from_slice(chunk);
        let buffer = std::mem::take(&mut self.pending);
        let limit = Masker::undecided_from(&current, &buffer);
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

/// Adds a value, and for a URL with a password, the password (unless it is too short to mask
/// in free text: any URL's password is masked where it stands by `mask_url_passwords`).
fn add_value(needles: &mut BTreeSet<Vec<u8>>, value: &str) {
    add_forms(needles, value.as_bytes());
    if let Some(password) = url_password(value).filter(|p| p.len() >= SHORTEST_MASKED) {
        add_forms(needles, password.as_bytes());
        add_forms(needles, &percent_decode(password));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn masker(values: &[&str]) -> Masker {
        Masker::new(values.iter().copied()).expect("masker")
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
}
