//! Transaction semantics, the change feed, snapshots and reopening, through the public API.

use std::collections::BTreeSet;
use std::io::Cursor;

use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{Entry, Membership, StoredMembership, Vote};
use steward_storage::{Change, Event, Guard, KeyValue, KvReader, Op, StoreError, Txn, TxnResult};
use tempfile::TempDir;
use tokio::sync::broadcast;

use crate::common::{blank, log_id, membership_entry, open_store, txn_entry, Log, Sm, TestConfig};

/// A store in a temporary directory, with a reader kept from the start.
struct Store {
    dir: TempDir,
    log: Log,
    sm: Sm,
    reader: KvReader,
}

impl Store {
    fn new() -> Store {
        let dir = tempfile::tempdir().unwrap();
        let (log, sm) = open_store(dir.path()).unwrap();
        let reader = sm.reader();
        Store { dir, log, sm, reader }
    }

    /// Drops every handle (releasing sled's files) and opens the store again.
    fn reopen(self) -> Store {
        let Store { dir, log, sm, reader } = self;
        drop((log, sm, reader));
        let (log, sm) = open_store(dir.path()).unwrap();
        let reader = sm.reader();
        Store { dir, log, sm, reader }
    }

    async fn apply(&mut self, entries: Vec<Entry<TestConfig>>) -> Vec<TxnResult> {
        self.sm.apply(entries).await.unwrap()
    }

    fn get(&self, key: &str) -> Option<KeyValue> {
        self.reader.get(key).unwrap()
    }

    fn value(&self, key: &str) -> Option<Vec<u8>> {
        self.get(key).map(|kv| kv.value)
    }

    fn keys(&self, prefix: &str) -> Vec<String> {
        self.reader.range(prefix).unwrap().into_iter().map(|(k, _)| k).collect()
    }
}

fn put(key: &str, value: &str) -> Op {
    Op::Put { key: key.to_string(), value: value.as_bytes().to_vec() }
}

fn del(key: &str) -> Op {
    Op::Delete { key: key.to_string() }
}

fn ok(revision: u64) -> TxnResult {
    TxnResult::ok(revision)
}

fn failed(revision: u64, guards: &[u32]) -> TxnResult {
    TxnResult { succeeded: false, revision, failed_guards: guards.to_vec(), ..Default::default() }
}

/// Everything the feed holds right now, without waiting.
fn drain(rx: &mut broadcast::Receiver<Event>) -> Vec<Event> {
    let mut out = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        out.push(ev);
    }
    out
}

#[tokio::test]
async fn guards_see_earlier_entries_of_the_same_batch() {
    let mut s = Store::new();
    let g = |guards: Vec<Guard>, key: &str| Txn::guarded(guards, vec![put(key, "x")]);
    let results = s
        .apply(vec![
            txn_entry(1, Txn::put("a", b"1".to_vec())),
            // Each guard below sees entry 1 although nothing is in sled yet.
            txn_entry(2, g(vec![Guard::Absent("a".into())], "r/absent")),
            txn_entry(3, g(vec![Guard::Exists("a".into())], "r/exists")),
            txn_entry(4, g(vec![Guard::ModRevision { key: "a".into(), rev: 1 }], "r/modrev")),
            txn_entry(5, g(vec![Guard::ModRevision { key: "nope".into(), rev: 0 }], "r/modrev0")),
            txn_entry(6, g(vec![Guard::ModRevision { key: "a".into(), rev: 0 }], "r/modrev-wrong")),
            txn_entry(7, g(vec![Guard::ValueEquals { key: "a".into(), value: b"1".to_vec() }], "r/eq")),
            txn_entry(8, g(vec![Guard::ValueEquals { key: "a".into(), value: b"2".to_vec() }], "r/neq")),
            txn_entry(9, g(vec![Guard::ValueEquals { key: "nope".into(), value: Vec::new() }], "r/eq-missing")),
            txn_entry(10, Txn::put("d/1", b"1".to_vec())),
            txn_entry(11, g(vec![Guard::PrefixEmpty("d/".into())], "r/empty-before")),
            txn_entry(12, Txn::ops(vec![Op::DeletePrefix { prefix: "d/".into() }])),
            txn_entry(13, g(vec![Guard::PrefixEmpty("d/".into())], "r/empty-after")),
            // A deleted key is absent again, and its mod revision reads as 0.
            txn_entry(14, Txn::ops(vec![del("a")])),
            txn_entry(15, g(vec![Guard::Absent("a".into()), Guard::ModRevision { key: "a".into(), rev: 0 }], "r/gone")),
        ])
        .await;
    assert_eq!(
        results,
        vec![
            ok(1),
            failed(2, &[0]),
            ok(3),
            ok(4),
            ok(5),
            failed(6, &[0]),
            ok(7),
            failed(8, &[0]),
            failed(9, &[0]),
            ok(10),
            failed(11, &[0]),
            ok(12),
            ok(13),
            ok(14),
            ok(15),
        ]
    );
    assert_eq!(s.keys("r/"), vec!["r/empty-after", "r/eq", "r/exists", "r/gone", "r/modrev", "r/modrev0"]);
    assert_eq!(s.get("a"), None);
    assert_eq!(s.reader.applied_index(), 15);

    // The same guards across batches (state read back from sled) agree.
    let results = s
        .apply(vec![txn_entry(
            16,
            Txn::guarded(
                vec![
                    Guard::Absent("a".into()),
                    Guard::Exists("r/eq".into()),
                    Guard::ModRevision { key: "r/eq".into(), rev: 7 },
                    Guard::ValueEquals { key: "r/eq".into(), value: b"x".to_vec() },
                    Guard::PrefixEmpty("d/".into()),
                    Guard::PrefixEmpty("r/".into()),
                ],
                vec![put("never", "x")],
            ),
        )])
        .await;
    assert_eq!(results, vec![failed(16, &[5])]);
    assert_eq!(s.get("never"), None);
}

#[tokio::test]
async fn failure_branch_applies_when_any_guard_fails() {
    let mut s = Store::new();
    s.apply(vec![txn_entry(1, Txn::put("owner", b"m1".to_vec()))]).await;
    let txn = Txn {
        guards: vec![
            Guard::Exists("owner".into()),
            Guard::Exists("missing".into()),
            Guard::ValueEquals { key: "owner".into(), value: b"m2".to_vec() },
        ],
        success: vec![put("won", "yes")],
        failure: vec![put("lost", "yes"), del("owner")],
    };
    let results = s.apply(vec![txn_entry(2, txn.clone())]).await;
    assert_eq!(results, vec![failed(2, &[1, 2])]);
    assert_eq!(s.get("won"), None);
    assert_eq!(s.value("lost"), Some(b"yes".to_vec()));
    assert_eq!(s.get("owner"), None);

    // All guards hold: success only.
    let txn = Txn { guards: vec![Guard::Exists("lost".into())], ..txn };
    assert_eq!(s.apply(vec![txn_entry(3, txn)]).await, vec![ok(3)]);
    assert_eq!(s.value("won"), Some(b"yes".to_vec()));
}

#[tokio::test]
async fn revisions_and_versions_follow_etcd() {
    let mut s = Store::new();
    let kv = |create, modr, version, v: &str| KeyValue {
        create_revision: create,
        mod_revision: modr,
        version,
        value: v.as_bytes().to_vec(),
    };
    s.apply(vec![blank(1), txn_entry(2, Txn::put("k", b"a".to_vec()))]).await;
    assert_eq!(s.get("k"), Some(kv(2, 2, 1, "a")));

    s.apply(vec![txn_entry(3, Txn::put("k", b"b".to_vec()))]).await;
    assert_eq!(s.get("k"), Some(kv(2, 3, 2, "b")));

    // Delete and re-create in later entries of one batch: version restarts at 1.
    s.apply(vec![
        txn_entry(4, Txn::ops(vec![del("k")])),
        txn_entry(5, Txn::put("k", b"c".to_vec())),
        txn_entry(6, Txn::put("k", b"d".to_vec())),
    ])
    .await;
    assert_eq!(s.get("k"), Some(kv(5, 6, 2, "d")));

    // Delete and re-create inside one transaction: created at this revision.
    s.apply(vec![txn_entry(7, Txn::ops(vec![del("k"), put("k", "e")]))]).await;
    assert_eq!(s.get("k"), Some(kv(7, 7, 1, "e")));

    // Two puts of one key in one transaction: both count.
    s.apply(vec![txn_entry(8, Txn::ops(vec![put("k", "f"), put("k", "g")]))]).await;
    assert_eq!(s.get("k"), Some(kv(7, 8, 3, "g")));
}

#[tokio::test]
async fn delete_prefix_removes_keys_put_earlier_in_the_batch() {
    let mut s = Store::new();
    s.apply(vec![txn_entry(1, Txn::ops(vec![put("p/1", "1"), put("p/2", "2"), put("q/1", "1"), put("p", "bare")]))])
        .await;
    let mut feed = s.reader.subscribe();
    s.apply(vec![
        txn_entry(2, Txn::ops(vec![put("p/3", "3"), del("p/2")])),
        txn_entry(3, Txn::ops(vec![Op::DeletePrefix { prefix: "p/".into() }])),
        txn_entry(4, Txn::ops(vec![put("p/4", "4")])),
    ])
    .await;
    assert_eq!(s.keys(""), vec!["p", "p/4", "q/1"]);

    let deleted: Vec<(u64, String)> = drain(&mut feed)
        .into_iter()
        .filter_map(|ev| match ev {
            Event::Change(Change { revision, key, new: None, .. }) => Some((revision, key)),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, vec![(2, "p/2".to_string()), (3, "p/1".to_string()), (3, "p/3".to_string())]);

    // The empty prefix deletes every user key, and never the store's own bookkeeping.
    s.apply(vec![txn_entry(5, Txn::ops(vec![Op::DeletePrefix { prefix: String::new() }]))]).await;
    assert!(s.keys("").is_empty());
    let (applied, _) = s.sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 5)));
}

#[tokio::test]
async fn a_prefix_read_a_page_at_a_time_or_its_last_key_alone_sees_nothing_outside_it() {
    let mut s = Store::new();
    let ops = ["o", "p", "p/1", "p/2", "p/3", "p/4", "p/5", "q/1"].iter().map(|k| put(k, "v")).collect();
    s.apply(vec![txn_entry(1, Txn::ops(ops))]).await;
    let page = |after: Option<&str>, limit| -> Vec<String> {
        s.reader.range_page("p/", after, limit).unwrap().into_iter().map(|(k, _)| k).collect()
    };
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let keys = page(after.as_deref(), 2);
        if keys.is_empty() {
            break;
        }
        assert!(keys.len() <= 2, "{keys:?}");
        after = keys.last().cloned();
        seen.extend(keys);
    }
    assert_eq!(seen, vec!["p/1", "p/2", "p/3", "p/4", "p/5"]);
    // `after` need not be a key; one before the prefix starts at its first key.
    assert_eq!(page(Some("p/2~"), 10), vec!["p/3", "p/4", "p/5"]);
    assert_eq!(page(Some("a"), 1), vec!["p/1"]);
    assert!(page(Some("p/5"), 10).is_empty());
    assert_eq!(s.reader.last_under("p/").unwrap().map(|(k, _)| k), Some("p/5".to_string()));
    assert_eq!(s.reader.last_under("p").unwrap().map(|(k, _)| k), Some("p/5".to_string()));
    assert_eq!(s.reader.last_under("o").unwrap().map(|(k, _)| k), Some("o".to_string()));
    assert!(s.reader.last_under("r").unwrap().is_none());
    assert!(page(None, 0).is_empty());
    assert!(s.reader.range_page("\0", None, 10).unwrap().is_empty());
}

#[tokio::test]
async fn change_feed_and_applied_watch_follow_apply() {
    let mut s = Store::new();
    let mut feed = s.reader.subscribe();
    let mut applied = s.reader.watch_applied();
    assert_eq!(*applied.borrow_and_update(), 0);

    s.apply(vec![txn_entry(1, Txn::put("a", b"1".to_vec()))]).await;
    assert!(applied.has_changed().unwrap());
    assert_eq!(*applied.borrow_and_update(), 1);
    s.apply(vec![
        txn_entry(2, Txn::ops(vec![put("a", "2"), del("missing")])),
        blank(3),
        txn_entry(4, Txn::guarded(vec![Guard::Absent("a".into())], vec![put("b", "x")])),
        txn_entry(5, Txn::ops(vec![del("a")])),
    ])
    .await;
    assert_eq!(*applied.borrow_and_update(), 5);

    let v1 = KeyValue { create_revision: 1, mod_revision: 1, version: 1, value: b"1".to_vec() };
    let v2 = KeyValue { create_revision: 1, mod_revision: 2, version: 2, value: b"2".to_vec() };
    assert_eq!(
        drain(&mut feed),
        vec![
            Event::Change(Change { revision: 1, key: "a".into(), old: None, new: Some(v1.clone()) }),
            // Deleting a missing key and a transaction whose guard failed publish nothing.
            Event::Change(Change { revision: 2, key: "a".into(), old: Some(v1), new: Some(v2.clone()) }),
            Event::Change(Change { revision: 5, key: "a".into(), old: Some(v2), new: None }),
        ]
    );
}

#[tokio::test]
async fn invalid_keys_reject_the_whole_transaction() {
    let mut s = Store::new();
    s.apply(vec![txn_entry(1, Txn::put("keep", b"1".to_vec()))]).await;
    let mut feed = s.reader.subscribe();
    let invalid = vec![
        Txn::put("", b"x".to_vec()),
        Txn::put("\0last_applied", b"x".to_vec()),
        Txn::ops(vec![put("fine", "x"), del("\0membership")]),
        Txn::ops(vec![Op::DeletePrefix { prefix: "\0".into() }]),
        // Invalid in the branch that would not even run: still rejected.
        Txn { guards: Vec::new(), success: vec![put("fine", "x")], failure: vec![put("", "x")] },
    ];
    for txn in &invalid {
        assert!(!txn.is_valid(), "{txn:?}");
    }
    let entries = invalid.into_iter().enumerate().map(|(i, t)| txn_entry(2 + i as u64, t)).collect();
    let results = s.apply(entries).await;
    assert_eq!(results, (2..=6).map(|r| failed(r, &[])).collect::<Vec<_>>());

    assert_eq!(s.keys(""), vec!["keep"]);
    assert!(drain(&mut feed).is_empty());
    // Bookkeeping is intact and invisible to readers.
    let (applied, _) = s.sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 6)));
    assert_eq!(s.reader.applied_index(), 6);
    assert_eq!(s.get("\0last_applied"), None);
    assert!(s.reader.range("\0").unwrap().is_empty());

    // Guards on reserved keys read them as absent.
    let results = s
        .apply(vec![txn_entry(
            7,
            Txn::guarded(
                vec![Guard::Absent("\0last_applied".into()), Guard::PrefixEmpty("\0".into())],
                vec![put("ok", "1")],
            ),
        )])
        .await;
    assert_eq!(results, vec![ok(7)]);
}

#[tokio::test]
async fn blank_and_membership_entries_advance_applied() {
    let mut s = Store::new();
    let results = s.apply(vec![blank(1), membership_entry(2, &[1, 2, 3]), blank(3)]).await;
    assert_eq!(results, vec![ok(1), ok(2), ok(3)]);
    let (applied, membership) = s.sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 3)));
    let voters: BTreeSet<u64> = [1, 2, 3].into_iter().collect();
    assert_eq!(membership, StoredMembership::new(Some(log_id(1, 2)), Membership::new(vec![voters], None)));
    assert_eq!(s.reader.applied_index(), 3);
    assert!(s.keys("").is_empty());
}

#[tokio::test]
async fn snapshot_install_replaces_state_and_survives_reopen() {
    // Leader: a, b at index 1..=3, membership at 2.
    let mut leader = Store::new();
    leader
        .apply(vec![
            txn_entry(1, Txn::ops(vec![put("a", "leader"), put("b", "leader")])),
            membership_entry(2, &[1, 2]),
            txn_entry(3, Txn::put("b", b"again".to_vec())),
        ])
        .await;
    let snap = leader.sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    assert_eq!(snap.meta.last_log_id, Some(log_id(1, 3)));

    // Follower: b and stale keys, further in its own (divergent) history.
    let mut follower = Store::new();
    follower.apply(vec![txn_entry(1, Txn::ops(vec![put("b", "stale"), put("stale/1", "x"), put("z", "x")]))]).await;
    let old_reader = follower.reader.clone();
    let mut feed = follower.reader.subscribe();

    let mut data = follower.sm.begin_receiving_snapshot().await.unwrap();
    *data = Cursor::new(snap.snapshot.into_inner());
    follower.sm.install_snapshot(&snap.meta, data).await.unwrap();

    let check = |s: &Store, reader: &KvReader| {
        assert_eq!(s.keys(""), vec!["a", "b"], "keys absent from the snapshot are gone");
        let b = reader.get("b").unwrap().unwrap();
        assert_eq!((b.value.as_slice(), b.create_revision, b.mod_revision, b.version), (&b"again"[..], 1, 3, 2));
        assert_eq!(reader.get("stale/1").unwrap(), None);
        assert_eq!(reader.applied_index(), 3);
    };
    check(&follower, &old_reader);
    assert_eq!(drain(&mut feed), vec![Event::Reset { revision: 3 }]);
    let (applied, membership) = follower.sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 3)));
    assert_eq!(membership, snap.meta.last_membership);
    assert_eq!(follower.sm.get_current_snapshot().await.unwrap().unwrap().meta, snap.meta);

    // Apply continues on top of the installed state.
    follower.apply(vec![txn_entry(4, Txn::put("a", b"after".to_vec()))]).await;
    assert_eq!(follower.get("a").unwrap().version, 2);
    drop(old_reader);

    let mut follower = follower.reopen();
    assert_eq!(follower.keys(""), vec!["a", "b"]);
    assert_eq!(follower.reader.applied_index(), 4);
    let current = follower.sm.get_current_snapshot().await.unwrap().expect("snapshot kept across reopen");
    assert_eq!(current.meta, snap.meta);
}

#[tokio::test]
async fn snapshot_built_on_a_follower_round_trips() {
    let mut s = Store::new();
    s.apply(vec![txn_entry(1, Txn::ops(vec![put("x", "1"), put("y", "2")])), membership_entry(2, &[7])]).await;
    let first = s.sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    s.apply(vec![txn_entry(3, Txn::ops(vec![del("x")]))]).await;
    let second = s.sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    assert_ne!(first.meta.snapshot_id, second.meta.snapshot_id);
    assert_eq!(s.sm.get_current_snapshot().await.unwrap().unwrap().meta, second.meta);

    // Installing the older snapshot rewinds the state to it entirely.
    let mut data = s.sm.begin_receiving_snapshot().await.unwrap();
    *data = Cursor::new(first.snapshot.into_inner());
    s.sm.install_snapshot(&first.meta, data).await.unwrap();
    assert_eq!(s.keys(""), vec!["x", "y"]);
    assert_eq!(s.reader.applied_index(), 2);
}

#[tokio::test]
async fn corrupt_snapshot_is_refused_without_touching_state() {
    let mut s = Store::new();
    s.apply(vec![txn_entry(1, Txn::put("x", b"1".to_vec()))]).await;
    let snap = s.sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    let mut bytes = snap.snapshot.into_inner();
    bytes[0] = 99; // unknown format version
    let mut data = s.sm.begin_receiving_snapshot().await.unwrap();
    *data = Cursor::new(bytes);
    assert!(s.sm.install_snapshot(&snap.meta, data).await.is_err());
    assert_eq!(s.keys(""), vec!["x"]);
}

#[tokio::test]
async fn interrupted_snapshot_install_is_finished_on_open() {
    // A crash after the snapshot file was saved but before the state was replaced looks like
    // this on disk: a snapshot file ahead of the state machine. Build that state by copying
    // another store's snapshot file in, and check that opening completes the install.
    let mut source = Store::new();
    source.apply(vec![txn_entry(1, Txn::put("new", b"1".to_vec())), blank(2)]).await;
    source.sm.get_snapshot_builder().await.build_snapshot().await.unwrap();

    let mut target = Store::new();
    target.apply(vec![txn_entry(1, Txn::put("old", b"1".to_vec()))]).await;
    let Store { dir, log, sm, reader } = target;
    drop((log, sm, reader));
    std::fs::copy(source.dir.path().join("snapshots/snapshot.bin"), dir.path().join("snapshots/snapshot.bin")).unwrap();

    let (_log, sm) = open_store(dir.path()).unwrap();
    let reader = sm.reader();
    assert_eq!(reader.applied_index(), 2);
    assert_eq!(reader.range("").unwrap().into_iter().map(|(k, _)| k).collect::<Vec<_>>(), vec!["new"]);
}

#[tokio::test]
async fn reopen_keeps_vote_log_applied_state_and_data() {
    let mut s = Store::new();
    let vote = Vote::new_committed(7, 3);
    s.log.save_vote(&vote).await.unwrap();
    let mut entries: Vec<_> = (1..=10).map(|i| txn_entry(i, Txn::put(format!("k/{i:02}"), vec![i as u8]))).collect();
    entries.push(membership_entry(11, &[3]));
    s.log.blocking_append(entries.clone()).await.unwrap();
    s.log.purge(log_id(1, 3)).await.unwrap();
    s.apply(entries[..8].to_vec()).await;
    s.apply(entries[8..].to_vec()).await;

    let mut s = s.reopen();
    assert_eq!(s.log.read_vote().await.unwrap(), Some(vote));
    let state = s.log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 3)));
    assert_eq!(state.last_log_id, Some(log_id(1, 11)));
    let log: Vec<_> = s.log.try_get_log_entries(..).await.unwrap();
    assert_eq!(log, entries[3..].to_vec());
    let (applied, membership) = s.sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 11)));
    assert_eq!(membership.log_id(), &Some(log_id(1, 11)));
    assert_eq!(s.reader.applied_index(), 11);
    assert_eq!(s.keys("k/").len(), 10);
    assert_eq!(s.get("k/10").unwrap().mod_revision, 10);

    // Truncation is durable too, and appending continues after it.
    s.log.truncate(log_id(1, 9)).await.unwrap();
    let mut s = s.reopen();
    assert_eq!(s.log.get_log_state().await.unwrap().last_log_id, Some(log_id(1, 8)));
    s.log.blocking_append(vec![blank(9)]).await.unwrap();
    assert_eq!(s.log.try_get_log_entries(4..).await.unwrap().len(), 6);
}

#[tokio::test]
async fn newer_store_format_is_refused() {
    let s = Store::new();
    let dir = s.dir;
    drop((s.log, s.sm, s.reader));
    {
        // Pretend a future version of this crate wrote the store.
        let db = open_sled(&dir.path().join("sled"));
        db.open_tree("meta").unwrap().insert("format", &[2u8]).unwrap();
        db.flush().unwrap();
    }
    match open_store(dir.path()) {
        Err(StoreError::UnsupportedVersion { found: 2, supported: 1, .. }) => {}
        Err(e) => panic!("expected UnsupportedVersion, got {e}"),
        Ok(_) => panic!("expected UnsupportedVersion, got a store"),
    }
}

/// Opens raw sled, retrying while a previous handle's background writes still hold the lock.
fn open_sled(path: &std::path::Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match sled::open(path) {
            Err(e) if e.to_string().contains("could not acquire lock") && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            res => return res.unwrap(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_built_during_applies_are_consistent() {
    // Every entry i puts `n/{i}` and sets `count` to i. A consistent snapshot at applied
    // index N therefore holds exactly N `n/` keys and `count` = N.
    let mut s = Store::new();
    let builder_sm = s.sm.get_snapshot_builder().await;
    let building = tokio::spawn(async move {
        let mut builder = builder_sm;
        let mut snaps = Vec::new();
        for _ in 0..20 {
            snaps.push(builder.build_snapshot().await.unwrap());
        }
        snaps
    });
    for i in 1..=200u64 {
        let txn = Txn::ops(vec![put(&format!("n/{i:04}"), "x"), put("count", &i.to_string())]);
        s.apply(vec![txn_entry(i, txn)]).await;
    }
    let snaps = building.await.unwrap();

    for snap in snaps {
        let mut check = Store::new();
        let meta = snap.meta.clone();
        let mut data = check.sm.begin_receiving_snapshot().await.unwrap();
        *data = Cursor::new(snap.snapshot.into_inner());
        check.sm.install_snapshot(&meta, data).await.unwrap();
        let n = meta.last_log_id.map_or(0, |id| id.index);
        assert_eq!(check.keys("n/").len() as u64, n, "snapshot {}", meta.snapshot_id);
        let count = check.value("count").map(|v| String::from_utf8(v).unwrap());
        assert_eq!(count, (n > 0).then(|| n.to_string()));
    }
}

#[tokio::test]
async fn nested_transactions_succeed_or_fail_one_by_one_in_one_entry() {
    let mut s = Store::new();
    s.apply(vec![txn_entry(1, Txn::put("taken", b"x".to_vec()))]).await;
    let claim = |key: &str| {
        Op::Txn(Txn {
            guards: vec![Guard::Absent(key.into())],
            success: vec![put(key, "mine")],
            failure: vec![put(&format!("lost/{key}"), "1")],
        })
    };
    // One entry carries three claims; the second fails its own guard and takes its failure
    // branch; the others are applied. A later nested claim sees an earlier one's write.
    let results = s.apply(vec![txn_entry(2, Txn::ops(vec![claim("a"), claim("taken"), claim("b"), claim("a")]))]).await;
    let r = &results[0];
    assert!(r.succeeded);
    let outcomes: Vec<bool> = r.nested.iter().map(|n| n.succeeded).collect();
    assert_eq!(outcomes, vec![true, false, true, false]);
    assert_eq!(s.value("a"), Some(b"mine".to_vec()));
    assert_eq!(s.value("b"), Some(b"mine".to_vec()));
    assert_eq!(s.value("taken"), Some(b"x".to_vec()));
    assert_eq!(s.keys("lost/"), vec!["lost/a".to_string(), "lost/taken".into()]);
    // A nested transaction that writes a reserved key makes the whole entry invalid.
    let bad = Txn::ops(vec![Op::Txn(Txn::ops(vec![put("\u{0}x", "1")])), put("c", "1")]);
    let r = s.apply(vec![txn_entry(3, bad)]).await;
    assert!(!r[0].succeeded && r[0].failed_guards.is_empty());
    assert_eq!(s.get("c"), None);
}

#[tokio::test]
async fn sequenced_puts_allocate_increasing_numbers_in_log_order() {
    use steward_storage::kv::{decode_seq, parse_seq_key, seq_key};
    let mut s = Store::new();
    let seq = |job: &str| Op::PutSequenced {
        counter: "seq/exec".into(),
        prefix: "exec/".into(),
        value: job.as_bytes().to_vec(),
        indexes: vec![format!("fires/{job}"), format!("running/{job}")],
    };
    let results = s
        .apply(vec![
            txn_entry(1, Txn::ops(vec![seq("a"), seq("b")])),
            // Inside nested transactions too, and only in the branch that runs.
            txn_entry(
                2,
                Txn::ops(vec![
                    Op::Txn(Txn::guarded(vec![Guard::Absent("fires/a".into())], vec![seq("a2")])),
                    Op::Txn(Txn::guarded(vec![Guard::Absent("fires/c".into())], vec![seq("c")])),
                ]),
            ),
        ])
        .await;
    assert_eq!(results[0].allocated, vec![1, 2]);
    assert_eq!(results[1].nested[0].allocated, Vec::<u64>::new());
    assert_eq!(results[1].nested[1].allocated, vec![3]);
    let keys = s.keys("exec/");
    assert_eq!(keys, vec![seq_key("exec/", 1), seq_key("exec/", 2), seq_key("exec/", 3)]);
    assert_eq!(parse_seq_key("exec/", &keys[2]), Some(3));
    assert_eq!(s.value(&seq_key("exec/", 3)), Some(b"c".to_vec()));
    assert_eq!(s.value("fires/c").and_then(|v| decode_seq(&v)), Some(3));
    assert_eq!(s.value("running/c").and_then(|v| decode_seq(&v)), Some(3));
    assert_eq!(s.value("seq/exec").and_then(|v| decode_seq(&v)), Some(3));
    // The counter survives a reopen and keeps counting.
    let mut s = s.reopen();
    let r = s.apply(vec![txn_entry(3, Txn::ops(vec![seq("d")]))]).await;
    assert_eq!(r[0].allocated, vec![4]);
}

#[tokio::test]
async fn replication_reads_are_bounded_by_size_but_always_carry_an_entry() {
    let mut s = Store::new();
    // Ten entries of ~100 KiB, then ten small ones.
    let big: Vec<Entry<TestConfig>> =
        (1..=10).map(|i| txn_entry(i, Txn::put(format!("big/{i}"), vec![7u8; 100 * 1024]))).collect();
    let small: Vec<Entry<TestConfig>> =
        (11..=20).map(|i| txn_entry(i, Txn::put(format!("s/{i}"), b"v".to_vec()))).collect();
    s.log.blocking_append(big).await.unwrap();
    s.log.blocking_append(small).await.unwrap();
    let mut reader = s.log.get_log_reader().await;
    let first = reader.limited_get_log_entries(1, 21).await.unwrap();
    let n = first.len();
    assert!((1..=3).contains(&n), "about 256 KiB of 100 KiB entries: {n}");
    assert_eq!(first[0].log_id.index, 1);
    // One entry larger than the bound still goes alone.
    let one = reader.limited_get_log_entries(10, 11).await.unwrap();
    assert_eq!(one.len(), 1);
    // Small entries all fit.
    let rest = reader.limited_get_log_entries(11, 21).await.unwrap();
    assert_eq!(rest.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), (11..=20).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_snapshot_built_while_applies_go_on_is_the_state_at_its_index() {
    const KEYS: usize = 20_000;
    let mut leader = Store::new();
    let mut index = 0;
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(500) {
        index += 1;
        let ops = chunk.iter().map(|i| put(&format!("k/{i:05}"), "start")).collect();
        leader.apply(vec![txn_entry(index, Txn::ops(ops))]).await;
    }
    let mut builder = leader.sm.get_snapshot_builder().await;
    let build = tokio::spawn(async move { builder.build_snapshot().await });
    // Overwrite, delete and create keys until the build is done.
    let mut later = Vec::new();
    let mut round = 0;
    while !build.is_finished() {
        round += 1;
        let i = round % KEYS;
        let txn = Txn::ops(vec![
            put(&format!("k/{i:05}"), "changed"),
            del(&format!("k/{:05}", (i + 7) % KEYS)),
            put(&format!("new/{round:06}"), "x"),
        ]);
        index += 1;
        let entry = txn_entry(index, txn);
        later.push(entry.clone());
        leader.apply(vec![entry]).await;
    }
    let snap = build.await.unwrap().unwrap();
    let at = snap.meta.last_log_id.unwrap().index;
    assert!(at < index, "the build ended before any apply ran beside it; nothing was tested");

    // A member that installs the snapshot and applies the entries after it ends where the
    // leader is, revisions included: the snapshot is exactly the state at its index.
    let mut follower = Store::new();
    let mut data = follower.sm.begin_receiving_snapshot().await.unwrap();
    *data = Cursor::new(snap.snapshot.into_inner());
    follower.sm.install_snapshot(&snap.meta, data).await.unwrap();
    follower.apply(later.into_iter().filter(|e| e.log_id.index > at).collect()).await;
    assert_eq!(follower.reader.range("").unwrap(), leader.reader.range("").unwrap());
}
