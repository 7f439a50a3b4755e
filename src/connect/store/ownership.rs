//! Whose unfinished uploads a cleanup may remove: a run's own, and anyone's abandoned ones.

/// After this long an unfinished upload is taken as abandoned by whoever wrote it, and any
/// run's cleanup removes it.
pub const STALE_UPLOAD: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Whether `owner`'s cleanup removes an upload of `of` (its owner, if it names one) started at
/// `started`: an ownerless cleanup removes everything, an owner's its own and stale ones.
pub(super) fn removable(owner: &str, of: Option<&str>, started: Option<jiff::Timestamp>) -> bool {
    owner.is_empty() || of == Some(owner) || stale(started)
}

/// Whether an upload started at `started` (unknown: not stale) is abandoned by now.
fn stale(started: Option<jiff::Timestamp>) -> bool {
    started.is_some_and(|at| {
        jiff::Timestamp::now().duration_since(at)
            > jiff::SignedDuration::try_from(STALE_UPLOAD).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_removes_its_own_uploads_and_anyones_stale_ones_only() {
        let now = Some(jiff::Timestamp::now());
        let old = Some(jiff::Timestamp::now() - jiff::SignedDuration::from_hours(25));
        assert!(removable("run_a", Some("run_a"), now));
        assert!(!removable("run_a", Some("run_b"), now));
        assert!(!removable("run_a", None, now));
        assert!(!removable("run_a", None, None));
        assert!(removable("run_a", Some("run_b"), old));
        assert!(removable("run_a", None, old));
        // Without an owner, the caller vouches that nothing is in flight.
        assert!(removable("", Some("run_b"), now));
    }

    #[tokio::test]
    async fn in_flight_files_name_their_run() {
        let directory = tempfile::tempdir().unwrap();
        let store = crate::connect::store::Store::open(&directory.path().display().to_string())
            .await
            .unwrap()
            .owned_by("20261205-201921-16cb");
        let (mut writer, reader) = tokio::io::duplex(64);
        let upload = store.put_stream("x.dump", reader, &|_| {});
        let named = async {
            use tokio::io::AsyncWriteExt;
            writer.write_all(b"some").await.unwrap();
            let mut names = Vec::new();
            for _ in 0..500 {
                names = std::fs::read_dir(directory.path())
                    .unwrap()
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect::<Vec<String>>();
                if names.iter().any(|n| n.contains(".partial-")) {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            drop(writer);
            names
        };
        let (stored, names) = tokio::join!(upload, named);
        assert_eq!(stored.unwrap(), 4);
        assert!(
            names
                .iter()
                .any(|n| n.starts_with("x.dump.partial-20261205_201921_16cb-")),
            "{names:?}"
        );
    }
}
