//! Leases and fencing on conditional writes, against a real S3 server (s3s-fs on loopback) and
//! a local directory. Time is given, not waited for: a runner "paused past its lease" is one
//! whose next call comes with a later clock, so the worst moment is reached exactly.

mod common;

use common::s3::S3Server;
use drillbook::connect::store::{Condition, Put, Store};
use drillbook::lease::{FencedLog, Lease, LeaseError, SKEW};
use jiff::{SignedDuration, Timestamp};

const LENGTH: SignedDuration = SignedDuration::from_secs(30);

async fn stores() -> (S3Server, tempfile::TempDir, Vec<Store>) {
    let server = S3Server::start();
    server.create_bucket("state");
    let s3 = Store::open_with("s3://state/fleet", &server.settings())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let local = Store::open(dir.path().to_str().unwrap()).await.unwrap();
    (server, dir, vec![s3, local])
}

#[tokio::test]
async fn conditional_writes_hold_on_both_stores() {
    let (_server, _dir, stores) = stores().await;
    for store in &stores {
        let key = "runs/r1/probe";
        let Put::Written(first) = store
            .put_if(key, b"one".to_vec(), &Condition::Absent)
            .await
            .unwrap()
        else {
            panic!("{}: an absent key is written", store.url());
        };
        assert_eq!(
            store
                .put_if(key, b"two".to_vec(), &Condition::Absent)
                .await
                .unwrap(),
            Put::Refused,
            "{}: a present key is not overwritten",
            store.url()
        );
        let (bytes, tag) = store.get_tagged(key).await.unwrap().unwrap();
        assert_eq!((bytes.as_slice(), &tag), (&b"one"[..], &first));
        let Put::Written(second) = store
            .put_if(key, b"three".to_vec(), &Condition::Unchanged(tag.clone()))
            .await
            .unwrap()
        else {
            panic!("{}: unchanged since read, so written", store.url());
        };
        assert_ne!(second, first);
        assert_eq!(
            store
                .put_if(key, b"four".to_vec(), &Condition::Unchanged(tag))
                .await
                .unwrap(),
            Put::Refused,
            "{}: changed since read, so refused",
            store.url()
        );
        assert_eq!(store.get_bytes(key).await.unwrap(), b"three");
        assert_eq!(store.get_tagged("runs/r1/none").await.unwrap(), None);
    }
}

#[tokio::test]
async fn a_paused_runner_is_fenced_out_after_a_takeover() {
    let (_server, _dir, stores) = stores().await;
    for store in &stores {
        let t0: Timestamp = "2026-12-06T06:00:00Z".parse().unwrap();
        let key = "runs/r1/lease";
        let log = FencedLog::new(store, "runs/r1/journal");

        // A holds the run and writes two records.
        let mut a = Lease::acquire(store, key, "runner-a", LENGTH, t0)
            .await
            .unwrap();
        assert_eq!(a.held.epoch, 1);
        log.append(0, b"a0".to_vec()).await.unwrap();
        log.append(1, b"a1".to_vec()).await.unwrap();
        a.renew(store, LENGTH, t0 + SignedDuration::from_secs(10))
            .await
            .unwrap();

        // B cannot take a live lease, nor one just past expiry (clock skew)...
        let held = Lease::acquire(
            store,
            key,
            "runner-b",
            LENGTH,
            t0 + SignedDuration::from_secs(20),
        )
        .await;
        assert!(
            matches!(&held, Err(LeaseError::Held(h)) if h.holder == "runner-a"),
            "{held:?}"
        );
        let expiry = t0 + SignedDuration::from_secs(40);
        let early = Lease::acquire(
            store,
            key,
            "runner-b",
            LENGTH,
            expiry + SignedDuration::from_secs(1),
        )
        .await;
        assert!(matches!(early, Err(LeaseError::Held(_))), "{early:?}");

        // ...but takes it once A is paused past it, reads the log to its end and writes its
        // takeover record at the next position: the fence.
        let taken_at = expiry + SKEW;
        let b = Lease::acquire(store, key, "runner-b", LENGTH, taken_at)
            .await
            .unwrap();
        assert_eq!(b.held.epoch, 2);
        let seen = log.read_all().await.unwrap();
        assert_eq!(seen.len(), 2);
        log.append(seen.len() as u64, b"b takes over".to_vec())
            .await
            .unwrap();

        // A wakes up: its renewal says who took the run, and its next append is refused.
        let lost = a
            .renew(store, LENGTH, taken_at + SignedDuration::from_secs(1))
            .await;
        assert!(
            matches!(&lost, Err(LeaseError::Lost(h)) if h.holder == "runner-b" && h.epoch == 2),
            "{}: {lost:?}",
            store.url()
        );
        let fenced = log.append(2, b"a2".to_vec()).await;
        assert!(matches!(fenced, Err(LeaseError::Fenced(2))), "{fenced:?}");
        assert_eq!(
            log.read_all().await.unwrap(),
            [b"a0".to_vec(), b"a1".to_vec(), b"b takes over".to_vec()],
            "{}: nothing of A after B's takeover",
            store.url()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_racing_writers_in_a_directory_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap()).await.unwrap();
    for round in 0..10 {
        let key = format!("lease-{round}");
        let tag = match round % 2 {
            // Half the rounds race to create, half to replace what they all read.
            0 => None,
            _ => match store
                .put_if(&key, b"seed".to_vec(), &Condition::Absent)
                .await
                .unwrap()
            {
                Put::Written(tag) => Some(tag),
                Put::Refused => unreachable!("a fresh key"),
            },
        };
        let racers: Vec<_> = (0..8)
            .map(|i| {
                let (store, key) = (store.clone(), key.clone());
                let condition = tag.clone().map_or(Condition::Absent, Condition::Unchanged);
                tokio::spawn(async move {
                    store
                        .put_if(&key, format!("racer {i}").into_bytes(), &condition)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut won = 0;
        for racer in racers {
            if matches!(racer.await.unwrap(), Put::Written(_)) {
                won += 1;
            }
        }
        assert_eq!(won, 1, "round {round}");
        assert!(store.get_bytes(&key).await.unwrap().starts_with(b"racer "));
    }
}
