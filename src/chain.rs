//! The journal's hash chain, checked: every record names the SHA-256 of the line before it, so
//! a record edited, removed, inserted or moved breaks a link, and [`check`] says which line and
//! what most likely happened there. What the chain cannot show by itself — the last records
//! cut off, or the whole journal rewritten — shows against its head (the last line's hash)
//! kept elsewhere: every report prints it.

use serde::Serialize;

use crate::journal::Replay;

/// What the check found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Chain {
    pub records: usize,
    /// The hash of the last line: compare with one kept elsewhere.
    pub head: Option<String>,
    /// Records at the start that carry no link: written before drillbook kept the chain.
    pub unchained: usize,
    /// Each broken link, worded for people, naming the line and the record's `seq`.
    pub breaks: Vec<String>,
}

impl Chain {
    pub fn intact(&self) -> bool {
        self.breaks.is_empty()
    }

    /// One line for reports: "27 records, hash chain intact, head sha256 …".
    pub fn summary(&self) -> String {
        let head = self
            .head
            .as_deref()
            .map(|head| format!(", head sha256 {head}"))
            .unwrap_or_default();
        let verdict = if self.intact() {
            "hash chain intact".to_string()
        } else {
            format!(
                "HASH CHAIN BROKEN ({}): {}",
                self.breaks.len(),
                self.breaks.join("; ")
            )
        };
        let old = if self.unchained > 0 {
            format!(
                " ({} record{} from before the chain)",
                self.unchained,
                if self.unchained == 1 { "" } else { "s" }
            )
        } else {
            String::new()
        };
        format!("{} records, {verdict}{old}{head}", self.records)
    }
}

/// Checks every link of a journal as read.
pub fn check(replay: &Replay) -> Chain {
    let records = &replay.records;
    let hashes = &replay.hashes;
    let mut breaks = Vec::new();
    // A record's line number is its position: the journal has one record per line.
    let line = |i: usize| i + 1;
    // The first record has no link by nature; those after it without one were written before
    // the chain (a journal resumed by a newer drillbook), all but the last of them unguarded.
    let leading = records.iter().take_while(|r| r.prev.is_none()).count();
    let unchained = if leading == records.len() && leading > 1 {
        leading
    } else {
        leading.saturating_sub(1)
    };
    if let Some(first) = records.first() {
        if first.seq != 0 {
            breaks.push(format!(
                "line 1 is seq {}: the records before it were removed",
                first.seq
            ));
        } else if first.prev.is_some() {
            breaks.push(
                "line 1 names a record before it: the journal's first records were removed"
                    .to_string(),
            );
        }
    }
    for i in 1..records.len() {
        let (before, record) = (&records[i - 1], &records[i]);
        let expected = &hashes[i - 1];
        match &record.prev {
            Some(prev) if prev == expected => {}
            // Still in the part written before the chain.
            None if i < leading => {}
            None => breaks.push(format!(
                "line {} (seq {}) carries no link to the line before: it was not written by drillbook's journal",
                line(i),
                record.seq
            )),
            Some(_) => breaks.push(broken_link(records, line(i - 1), before.seq, record.seq)),
        }
    }
    Chain {
        records: records.len(),
        head: replay.head().map(str::to_owned),
        unchained,
        breaks,
    }
}

/// What a broken link between line `above` (seq `was`) and the next (seq `now`) most likely
/// means, from the sequence numbers around it.
fn broken_link(records: &[crate::event::Record], above: usize, was: u64, now: u64) -> String {
    let here = above + 1;
    if now == was + 1 {
        return format!(
            "line {above} (seq {was}) was edited: its hash is not the one line {here} recorded"
        );
    }
    if now == was {
        return format!("lines {above} and {here} are both seq {now}: one of them was inserted");
    }
    if now > was + 1 {
        let missing: Vec<String> = (was + 1..now)
            .map(|seq| match records.iter().position(|r| r.seq == seq) {
                Some(j) => format!("seq {seq} was moved to line {}", j + 1),
                None => format!("seq {seq} was removed"),
            })
            .collect();
        return format!("{} (between lines {above} and {here})", missing.join(", "));
    }
    format!(
        "line {here} (seq {now}) is out of place after seq {was}: inserted, or moved from elsewhere"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::journal::{Journal, read};

    /// A journal of `n` records, and its lines.
    fn journal(n: usize) -> (tempfile::TempDir, std::path::PathBuf, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::create(&dir.path().join("run")).unwrap();
        for i in 0..n {
            journal
                .append(Event::Interrupted {
                    reason: format!("record {i}"),
                })
                .unwrap();
        }
        let path = journal.path().to_path_buf();
        let lines = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        (dir, path, lines)
    }

    fn checked(path: &std::path::Path, lines: &[String]) -> Chain {
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
        check(&read(path).unwrap())
    }

    #[test]
    fn an_untouched_journal_is_intact_and_its_head_is_its_last_line() {
        let (_dir, path, lines) = journal(5);
        let chain = checked(&path, &lines);
        assert!(chain.intact(), "{chain:?}");
        assert_eq!(chain.records, 5);
        assert_eq!(
            chain.head.as_deref(),
            Some(crate::journal::line_hash(lines[4].as_bytes()).as_str())
        );
        assert!(
            chain
                .summary()
                .starts_with("5 records, hash chain intact, head sha256 ")
        );
    }

    #[test]
    fn an_edit_names_the_edited_line() {
        let (_dir, path, mut lines) = journal(5);
        lines[2] = lines[2].replace("record 2", "record two");
        let chain = checked(&path, &lines);
        assert_eq!(
            chain.breaks,
            ["line 3 (seq 2) was edited: its hash is not the one line 4 recorded"]
        );
    }

    #[test]
    fn a_removal_names_what_is_missing() {
        let (_dir, path, mut lines) = journal(5);
        lines.remove(2);
        let chain = checked(&path, &lines);
        assert_eq!(chain.breaks, ["seq 2 was removed (between lines 2 and 3)"]);
        let (_dir, path, mut lines) = journal(3);
        lines.remove(0);
        assert_eq!(
            checked(&path, &lines).breaks,
            ["line 1 is seq 1: the records before it were removed"]
        );
    }

    #[test]
    fn a_swap_names_the_moved_records() {
        let (_dir, path, mut lines) = journal(5);
        lines.swap(1, 2);
        assert_eq!(
            checked(&path, &lines).breaks,
            [
                "seq 1 was moved to line 3 (between lines 1 and 2)",
                "line 3 (seq 1) is out of place after seq 2: inserted, or moved from elsewhere",
                "seq 2 was moved to line 2 (between lines 3 and 4)",
            ]
        );
    }

    #[test]
    fn an_insertion_is_out_of_place_even_with_a_forged_link() {
        let (_dir, path, mut lines) = journal(4);
        // A forger copies line 2's link and seq, and even links their record correctly.
        let forged = lines[2].replace("record 2", "forged");
        lines.insert(2, forged);
        assert_eq!(
            checked(&path, &lines).breaks,
            ["lines 3 and 4 are both seq 2: one of them was inserted"]
        );
        // A line with no link at all after the chain began.
        let (_dir, path, mut lines) = journal(4);
        lines.insert(
            2,
            r#"{"seq":2,"at":"2026-12-06T00:00:00Z","event":"interrupted","reason":"x"}"#.into(),
        );
        assert_eq!(
            checked(&path, &lines).breaks,
            [
                "line 3 (seq 2) carries no link to the line before: it was not written by drillbook's journal",
                "lines 3 and 4 are both seq 2: one of them was inserted"
            ]
        );
    }

    #[test]
    fn a_journal_from_before_the_chain_is_not_broken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let lines: Vec<String> = (0..3)
            .map(|i| {
                format!(r#"{{"seq":{i},"at":"2026-12-06T00:00:00Z","event":"interrupted","reason":"x"}}"#)
            })
            .collect();
        let chain = checked(&path, &lines);
        assert!(chain.intact(), "{chain:?}");
        assert_eq!(chain.unchained, 3);
    }
}
