//! The names and marks of the databases a restore makes beside its target.
//!
//! A restore into `app` goes into `app_restore_<tag>_<attempt>` (the tag a hash of the run,
//! the step and the target, so a re-run of the same step finds what an earlier attempt left),
//! and the database it replaces is kept as `app_before_<yyyymmdd_hhmmss>`. Both carry a
//! comment that starts with a fixed mark and holds, as JSON, what they are for: drillbook
//! drops a database only when its name has the pattern *and* its comment has the mark naming
//! the same target, so it never drops a database somebody else made.

use serde::{Deserialize, Serialize};

/// PostgreSQL cuts identifiers at 63 bytes (NAMEDATALEN - 1).
const NAME_LIMIT: usize = 63;
/// The bytes of the target's name kept in a derived name: room is left for the longest
/// suffix (`_before_20260101_120000_99`), so every derived name of a target starts alike.
const KEPT: usize = 36;

const SCRATCH: &str = "_restore_";
const PREVIOUS: &str = "_before_";
const UNDONE: &str = "_restored_";

/// The comment of a scratch database starts with this.
pub(super) const SCRATCH_MARK: &str = "drillbook restore scratch ";
/// The comment of a previous database starts with this.
pub(super) const PREVIOUS_MARK: &str = "drillbook previous database ";

/// The target's name, cut at a character boundary to leave room for a suffix.
fn stem(target: &str) -> &str {
    let mut end = target.len().min(KEPT);
    while !target.is_char_boundary(end) {
        end -= 1;
    }
    &target[..end]
}

/// `<db>_restore_`: what every scratch database of `target` starts with.
pub(super) fn scratch_prefix(target: &str) -> String {
    format!("{}{SCRATCH}", stem(target))
}

/// `<db>_restore_<tag>_`: what the scratch databases of this run's step start with.
pub(super) fn scratch_stem(target: &str, run: &str, step: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{run}\0{step}\0{target}").as_bytes());
    let tag = crate::format::hex(&digest[..4]);
    format!("{}{tag}_", scratch_prefix(target))
}

/// The scratch database of one attempt.
pub(super) fn scratch_name(target: &str, run: &str, step: &str, attempt: u32) -> String {
    let name = format!("{}{attempt}", scratch_stem(target, run, step));
    debug_assert!(name.len() <= NAME_LIMIT);
    name
}

/// `<db>_before_`: what every previous database of `target` starts with.
pub(super) fn previous_prefix(target: &str) -> String {
    format!("{}{PREVIOUS}", stem(target))
}

/// `20260101_120000`: the time in the names of kept databases (UTC, to the second).
pub(super) fn stamp(at: jiff::Timestamp) -> String {
    at.strftime("%Y%m%d_%H%M%S").to_string()
}

/// The name the replaced target is kept under; `n` tells apart two swaps in one second.
pub(super) fn previous_name(target: &str, stamp: &str, n: u32) -> String {
    match n {
        0 | 1 => format!("{}{stamp}", previous_prefix(target)),
        n => format!("{}{stamp}_{n}", previous_prefix(target)),
    }
}

/// The name a rollback sets the restored database aside under.
pub(super) fn undone_name(target: &str, stamp: &str) -> String {
    format!("{}{UNDONE}{stamp}", stem(target))
}

/// What a scratch database's comment says about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ScratchMark {
    pub target: String,
    pub run: String,
    pub step: String,
    pub attempt: u32,
    /// The machine and process of the drillbook restoring into it.
    pub host: String,
    pub pid: u32,
}

/// What a previous database's comment says about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PreviousMark {
    pub target: String,
    pub run: String,
    pub step: String,
    pub replaced_at: jiff::Timestamp,
    /// The comment the database had before (it moved to the restored database).
    pub comment: Option<String>,
    /// What replaced it: the backup, the scratch database it was restored into, and how many
    /// pg_restore errors `allow_errors` let pass (a resumed step reports them again).
    pub backup: String,
    pub scratch: String,
    pub errors_ignored: usize,
}

/// A mark is a comment: a fixed prefix, then what it says as JSON.
pub(super) trait Mark: Serialize + serde::de::DeserializeOwned {
    const PREFIX: &'static str;

    fn comment(&self) -> String {
        format!(
            "{}{}",
            Self::PREFIX,
            serde_json::to_string(self).unwrap_or_default()
        )
    }

    fn parse(comment: Option<&str>) -> Option<Self> {
        serde_json::from_str(comment?.strip_prefix(Self::PREFIX)?).ok()
    }
}

impl Mark for ScratchMark {
    const PREFIX: &'static str = SCRATCH_MARK;
}

impl Mark for PreviousMark {
    const PREFIX: &'static str = PREVIOUS_MARK;
}

impl PreviousMark {
    /// A comment to carry over: a previous database rolled back by hand still has the mark,
    /// and what it stands for is the comment it had.
    pub(super) fn original(comment: Option<String>) -> Option<String> {
        match PreviousMark::parse(comment.as_deref()) {
            Some(mark) => mark.comment,
            None => comment,
        }
    }
}

/// A scratch database found on the server, as the query in swap.rs reads it.
pub(super) struct Found {
    pub name: String,
    pub comment: Option<String>,
    pub owned: bool,
}

/// Who this drillbook is, to recognise its own leftovers.
pub(super) struct Me<'a> {
    pub target: &'a str,
    pub run: &'a str,
    pub step: &'a str,
    pub host: &'a str,
}

/// What to do with a database whose name starts like a scratch database of the target.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Leftover {
    /// Not drillbook's, or another target's: left alone.
    NotOurs,
    /// An earlier attempt of this step left it (a crash, a timeout): dropped.
    Ours,
    /// A drillbook on this machine that is no longer running left it: dropped.
    Orphaned(ScratchMark),
    /// Another restore may be using it: the restore refuses, naming it.
    Busy(ScratchMark),
}

/// Sorts out a found database; `alive` says whether a process of this machine is running.
pub(super) fn leftover(found: &Found, me: &Me, alive: impl Fn(u32) -> bool) -> Leftover {
    if !found.name.starts_with(&scratch_prefix(me.target)) {
        return Leftover::NotOurs;
    }
    let Some(mark) = ScratchMark::parse(found.comment.as_deref()) else {
        // Made but not marked yet (drillbook died between CREATE and COMMENT): recognised by
        // its exact name, this step's, and by being ours, never by the pattern alone.
        let own_name = found
            .name
            .strip_prefix(&scratch_stem(me.target, me.run, me.step))
            .is_some_and(|attempt| {
                !attempt.is_empty() && attempt.bytes().all(|b| b.is_ascii_digit())
            });
        return if own_name && found.owned && found.comment.is_none() {
            Leftover::Ours
        } else {
            Leftover::NotOurs
        };
    };
    if mark.target != me.target {
        Leftover::NotOurs
    } else if mark.run == me.run && mark.step == me.step {
        Leftover::Ours
    } else if mark.host == me.host && !alive(mark.pid) {
        Leftover::Orphaned(mark)
    } else {
        Leftover::Busy(mark)
    }
}

/// This machine's name, as scratch marks record it.
pub(super) fn host() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer we own.
    let result = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if result != 0 {
        return "unknown".into();
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
}

/// Whether a process of this machine is running.
pub(super) fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(run: &str, host: &str, pid: u32) -> String {
        ScratchMark {
            target: "app".into(),
            run: run.into(),
            step: "restore".into(),
            attempt: 1,
            host: host.into(),
            pid,
        }
        .comment()
    }

    #[test]
    fn names_fit_in_63_bytes_and_keep_the_target_recognisable() {
        let long = "é".repeat(40);
        for target in ["app", long.as_str(), &"x".repeat(63)] {
            let scratch = scratch_name(target, "run-1", "restore", 12345);
            let previous = previous_name(target, "20260101_120000", 99);
            let undone = undone_name(target, "20260101_120000");
            for name in [&scratch, &previous, &undone] {
                assert!(name.len() <= 63, "{name}: {} bytes", name.len());
            }
            assert!(scratch.starts_with(&scratch_prefix(target)));
            assert!(previous.starts_with(&previous_prefix(target)));
        }
        assert_eq!(
            previous_name("app", "20260101_120000", 1),
            "app_before_20260101_120000"
        );
        assert_eq!(
            previous_name("app", "20260101_120000", 2),
            "app_before_20260101_120000_2"
        );
        let scratch = scratch_name("app", "run-1", "restore", 2);
        assert!(
            scratch.starts_with("app_restore_") && scratch.ends_with("_2"),
            "{scratch}"
        );
        assert_ne!(scratch, scratch_name("app", "run-2", "restore", 2));
        assert_ne!(scratch, scratch_name("app2", "run-1", "restore", 2));
        assert_eq!(
            stamp("2026-01-02T03:04:05.678Z".parse().unwrap()),
            "20260102_030405"
        );
    }

    #[test]
    fn only_marked_scratch_databases_of_the_same_target_are_leftovers() {
        let me = Me {
            target: "app",
            run: "run-1",
            step: "restore",
            host: "here",
        };
        let mine = scratch_name("app", "run-1", "restore", 1);
        let other = "app_restore_ffffffff_1";
        let another_target = ScratchMark::parse(Some(&mark("run-1", "here", 1)))
            .map(|m| ScratchMark {
                target: "other".into(),
                ..m
            })
            .map(|m| m.comment());
        // (name, comment, owned by us, is its process running, what it is)
        let cases: [(&str, Option<String>, bool, bool, &str); 10] = [
            (&mine, Some(mark("run-1", "here", 1)), true, true, "ours"),
            (
                other,
                Some(mark("run-0", "here", 7)),
                true,
                false,
                "orphaned",
            ),
            (other, Some(mark("run-0", "here", 7)), true, true, "busy"),
            (other, Some(mark("run-0", "there", 7)), true, false, "busy"),
            // Unmarked: only this step's exact name, owned by us, without any comment.
            (&mine, None, true, false, "ours"),
            (other, None, true, false, "not ours"),
            (&mine, None, false, false, "not ours"),
            (&mine, Some("mine".into()), true, false, "not ours"),
            // Another target's mark, or a name without the pattern.
            (&mine, another_target, true, false, "not ours"),
            (
                "app_copy",
                Some(mark("run-1", "here", 1)),
                true,
                false,
                "not ours",
            ),
        ];
        for (name, comment, owned, running, expected) in cases {
            let found = Found {
                name: name.into(),
                comment: comment.clone(),
                owned,
            };
            let what = match leftover(&found, &me, |_| running) {
                Leftover::NotOurs => "not ours",
                Leftover::Ours => "ours",
                Leftover::Orphaned(_) => "orphaned",
                Leftover::Busy(_) => "busy",
            };
            assert_eq!(
                what, expected,
                "{name} {comment:?} owned {owned} running {running}"
            );
        }
    }

    #[test]
    fn a_previous_mark_keeps_the_comment_it_replaced() {
        let mark = PreviousMark {
            target: "app".into(),
            run: "r".into(),
            step: "restore".into(),
            replaced_at: "2026-01-02T03:04:05Z".parse().unwrap(),
            comment: Some("the app's 'main' database".into()),
            backup: "20260102T030000.000Z.dump".into(),
            scratch: "app_restore_0123abcd_1".into(),
            errors_ignored: 0,
        };
        let comment = mark.comment();
        assert!(comment.starts_with(PREVIOUS_MARK));
        assert_eq!(PreviousMark::parse(Some(&comment)), Some(mark.clone()));
        assert_eq!(
            PreviousMark::original(Some(comment)),
            Some("the app's 'main' database".into())
        );
        assert_eq!(
            PreviousMark::original(Some("plain".into())),
            Some("plain".into())
        );
        assert_eq!(
            PreviousMark::parse(Some("drillbook previous database {")),
            None
        );
    }
}
