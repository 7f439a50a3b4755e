//! What a comparison found, and its counts and lines in the evidence.

/// Findings listed one by one in the evidence; the counts cover all of them.
const FINDINGS_SHOWN: usize = 50;

/// Findings of one sort: how many, and the first [`FINDINGS_SHOWN`] (a store that lost a
/// million objects is not listed whole).
#[derive(Debug)]
pub(super) struct Listed<T> {
    count: usize,
    first: Vec<T>,
}

impl<T> Default for Listed<T> {
    fn default() -> Listed<T> {
        Listed {
            count: 0,
            first: Vec::new(),
        }
    }
}

impl<T> Listed<T> {
    pub(super) fn push(&mut self, item: T) {
        self.count += 1;
        if self.first.len() < FINDINGS_SHOWN {
            self.first.push(item);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.count
    }

    pub(super) fn iter(&self) -> std::slice::Iter<'_, T> {
        self.first.iter()
    }
}

impl<T: Ord> Listed<T> {
    /// Orders the findings shown (found in any order, e.g. as hashing finished).
    pub(super) fn sort(&mut self) {
        self.first.sort();
    }
}

impl<T> From<Vec<T>> for Listed<T> {
    fn from(items: Vec<T>) -> Listed<T> {
        let mut listed = Listed::default();
        for item in items {
            listed.push(item);
        }
        listed
    }
}

/// What a comparison found. `sides` name the two things compared, for the evidence.
#[derive(Debug, Default)]
pub(super) struct Findings {
    /// Distinct keys on either side.
    pub(super) compared: usize,
    /// What `compared` counted, after the number ("objects compared").
    pub(super) against: &'static str,
    pub(super) sides: (&'static str, &'static str),
    pub(super) missing: Listed<String>,
    pub(super) extra: Listed<String>,
    /// Key, size on the first side, size on the second.
    pub(super) sizes: Listed<(String, u64, u64)>,
    /// Key, SHA-256 on the first side, on the second.
    pub(super) contents: Listed<(String, String, String)>,
    /// How the content was checked, for the evidence.
    pub(super) hashing: Vec<String>,
}

impl Findings {
    pub(super) fn total(&self) -> usize {
        self.missing.len() + self.extra.len() + self.sizes.len() + self.contents.len()
    }

    /// "2,000 objects compared: 1 missing, 1 extra, 0 size mismatches, 1 content mismatch"
    pub(super) fn counts(&self) -> String {
        format!(
            "{} {} compared{}: {} missing, {} extra, {}, {}",
            thousands(self.compared as u64),
            plural(self.compared, "object", "objects"),
            self.against,
            thousands(self.missing.len() as u64),
            thousands(self.extra.len() as u64),
            counted(self.sizes.len(), "size mismatch", "size mismatches"),
            counted(
                self.contents.len(),
                "content mismatch",
                "content mismatches"
            ),
        )
    }

    /// One line per finding, the first [`FINDINGS_SHOWN`] of them.
    pub(super) fn lines(&self) -> Vec<String> {
        let (first, second) = self.sides;
        let all = self
            .missing
            .iter()
            .map(|key| format!("missing: {key}"))
            .chain(self.extra.iter().map(|key| format!("extra: {key}")))
            .chain(
                self.sizes
                    .iter()
                    .map(|(key, a, b)| format!("size mismatch: {key} ({first} {a}, {second} {b})")),
            )
            .chain(
                self.contents
                    .iter()
                    .map(|(key, a, b)| format!("content mismatch: {key} (sha256 {a} vs {b})")),
            );
        let mut lines: Vec<String> = all.take(FINDINGS_SHOWN).collect();
        let more = self.total().saturating_sub(FINDINGS_SHOWN);
        if more > 0 {
            lines.push(format!(
                "… and {} more {}",
                thousands(more as u64),
                plural(more, "finding", "findings")
            ));
        }
        lines
    }
}

/// `2,000`
pub(super) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

pub(super) fn plural(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

/// `1 content mismatch`, `0 size mismatches`
fn counted(n: usize, one: &'static str, many: &'static str) -> String {
    format!("{} {}", thousands(n as u64), plural(n, one, many))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_as_english() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(2_000), "2,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        let findings = Findings {
            compared: 2_000,
            sides: ("source", "destination"),
            missing: vec!["a".into()].into(),
            extra: vec!["b".into()].into(),
            contents: vec![("c".into(), "01".into(), "02".into())].into(),
            ..Findings::default()
        };
        assert_eq!(
            findings.counts(),
            "2,000 objects compared: 1 missing, 1 extra, 0 size mismatches, 1 content mismatch"
        );
        assert_eq!(
            findings.lines(),
            [
                "missing: a",
                "extra: b",
                "content mismatch: c (sha256 01 vs 02)"
            ]
        );
    }

    #[test]
    fn only_the_first_findings_are_listed() {
        let findings = Findings {
            compared: 120,
            sides: ("report", "store"),
            missing: (0..60).map(|i| format!("m{i}")).collect::<Vec<_>>().into(),
            sizes: vec![("s".into(), 1, 2)].into(),
            ..Findings::default()
        };
        let lines = findings.lines();
        assert_eq!(lines.len(), FINDINGS_SHOWN + 1);
        assert_eq!(lines[FINDINGS_SHOWN], "… and 11 more findings");
        let findings = Findings {
            sizes: vec![("s".into(), 1, 2)].into(),
            sides: ("report", "store"),
            ..Findings::default()
        };
        assert_eq!(findings.lines(), ["size mismatch: s (report 1, store 2)"]);
    }
}
