//! Tests of the raft stores on sled: openraft's own storage suite, then restarts that must
//! keep the vote, the log, the applied state and the snapshot, snapshot installs, purges
//! larger than one chunk, and truncation of a conflicting tail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    BasicNode, CommittedLeaderId, EntryPayload, Membership, RaftLogReader, RaftSnapshotBuilder,
    StorageHelper,
};
use tempfile::TempDir;

use super::{open, LogStore, OpenError, StateMachineStore, PURGE_CHUNK};
use crate::cluster::types::{
    Entry, LogId, Request, Response, StorageError, StoredMembership, TypeConfig, Vote,
};
use crate::election::Reason;

/// Opens fresh stores in a temp dir for every test of openraft's suite.
struct TempStores;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for TempStores {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = TempDir::new().expect("temp dir");
        let (log, sm) = open(&dir.path().join("raft")).expect("open raft stores");
        Ok((dir, log, sm))
    }
}

#[test]
fn passes_the_openraft_storage_suite() {
    // The suite runs each case on its own runtime, so it is a plain (not tokio) test.
    Suite::test_all(TempStores).expect("openraft storage suite");
}

/// Reopens `dir`, waiting for sled's background thread of a dropped handle to let go of the
/// directory lock.
fn reopen(dir: &Path) -> (LogStore, StateMachineStore) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match open(dir) {
            Ok(stores) => return stores,
            Err(OpenError::Sled { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("reopen {}: {e}", dir.display()),
        }
    }
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64, payload: EntryPayload<TypeConfig>) -> Entry {
    Entry {
        log_id: log_id(term, index),
        payload,
    }
}

fn membership() -> Membership<u64, BasicNode> {
    let nodes = BTreeMap::from([
        (1, BasicNode::new("127.0.0.1:9093")),
        (2, BasicNode::new("127.0.0.1:9094")),
        (3, BasicNode::new("127.0.0.1:9095")),
    ]);
    Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes)
}

fn promote(source: &str, at_ms: u64) -> EntryPayload<TypeConfig> {
    EntryPayload::Normal(Request::Promote {
        group: "g".into(),
        source: source.into(),
        weight: 1,
        reason: Reason::NoPromotedSource,
        at_ms,
        expect: None,
    })
}

fn watermark(data_ts: i64) -> EntryPayload<TypeConfig> {
    EntryPayload::Normal(Request::Watermark {
        endpoint: "vm".into(),
        data_ts,
        at_ms: 0,
    })
}

fn sample_log() -> Vec<Entry> {
    vec![
        entry(0, 0, EntryPayload::Membership(membership())),
        entry(1, 1, EntryPayload::Blank),
        entry(1, 2, promote("a", 100)),
        entry(2, 3, watermark(5_000)),
        entry(2, 4, promote("b", 200)),
    ]
}

#[tokio::test]
async fn restart_keeps_vote_log_and_applied_state() {
    let tmp = TempDir::new().expect("temp dir");
    let dir = tmp.path().join("raft");
    let vote = Vote::new_committed(2, 1);
    let (expected_control, expected_membership) = {
        let (mut log, mut sm) = open(&dir).expect("open");
        let reader = sm.reader();
        log.blocking_append(sample_log()).await.expect("append");
        log.save_vote(&vote).await.expect("save vote");
        log.save_committed(Some(log_id(2, 4)))
            .await
            .expect("save committed");
        let responses = sm
            .apply(sample_log().into_iter().take(4))
            .await
            .expect("apply");
        assert_eq!(responses.len(), 4);
        assert_eq!(responses[0], Response::Empty);
        assert_eq!(
            responses[2],
            Response::Group {
                epoch: 1,
                changed: true
            }
        );
        let applied = reader.current();
        assert_eq!(applied.last_applied, Some(log_id(2, 3)));
        assert_eq!(applied.state.watermark("vm"), Some(5_000));
        let (_, membership) = sm.applied_state().await.expect("applied state");
        (applied.state.clone(), membership)
    };

    let (mut log, mut sm) = reopen(&dir);
    assert_eq!(log.read_vote().await.expect("read vote"), Some(vote));
    assert_eq!(
        log.read_committed().await.expect("read committed"),
        Some(log_id(2, 4))
    );
    let state = log.get_log_state().await.expect("log state");
    assert_eq!(state.last_purged_log_id, None);
    assert_eq!(state.last_log_id, Some(log_id(2, 4)));
    let entries = log.try_get_log_entries(..).await.expect("entries");
    assert_eq!(
        entries.iter().map(|e| e.log_id).collect::<Vec<_>>(),
        sample_log().iter().map(|e| e.log_id).collect::<Vec<_>>()
    );
    let (applied, membership) = sm.applied_state().await.expect("applied state");
    assert_eq!(applied, Some(log_id(2, 3)));
    assert_eq!(membership, expected_membership);
    assert_eq!(
        membership,
        StoredMembership::new(Some(log_id(0, 0)), membership.membership().clone())
    );
    let control = sm.reader().current();
    assert_eq!(control.last_applied, Some(log_id(2, 3)));
    assert_eq!(control.state, expected_control);
    assert_eq!(
        control.state.promoted("g").map(|p| p.source.as_str()),
        Some("a")
    );

    // openraft can start from it: it re-applies the committed entry the state machine had
    // not applied before the restart, and nothing beyond.
    let initial = StorageHelper::new(&mut log, &mut sm)
        .get_initial_state()
        .await
        .expect("initial state");
    assert_eq!(initial.vote_ref(), &vote);
    assert_eq!(initial.committed, Some(log_id(2, 4)));
    let (applied, _) = sm.applied_state().await.expect("applied state");
    assert_eq!(applied, Some(log_id(2, 4)));
    assert_eq!(
        sm.reader()
            .current()
            .state
            .promoted("g")
            .map(|p| (p.source.as_str(), p.epoch)),
        Some(("b", 2))
    );
}

#[tokio::test]
async fn restart_keeps_the_current_snapshot_and_purged_log() {
    let tmp = TempDir::new().expect("temp dir");
    let dir = tmp.path().join("raft");
    let snapshot_meta = {
        let (mut log, mut sm) = open(&dir).expect("open");
        log.blocking_append(sample_log()).await.expect("append");
        sm.apply(sample_log()).await.expect("apply");
        let snapshot = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("build snapshot");
        log.purge(log_id(2, 4)).await.expect("purge");
        snapshot.meta
    };

    let (mut log, mut sm) = reopen(&dir);
    let current = sm
        .get_current_snapshot()
        .await
        .expect("current snapshot")
        .expect("a snapshot");
    assert_eq!(current.meta, snapshot_meta);
    assert_eq!(current.meta.last_log_id, Some(log_id(2, 4)));
    let state = log.get_log_state().await.expect("log state");
    assert_eq!(state.last_purged_log_id, Some(log_id(2, 4)));
    assert_eq!(state.last_log_id, Some(log_id(2, 4)));
    assert!(log
        .try_get_log_entries(..)
        .await
        .expect("entries")
        .is_empty());

    // A new snapshot id after a restart, never a reused one.
    let again = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build snapshot");
    assert_ne!(again.meta.snapshot_id, snapshot_meta.snapshot_id);
}

#[tokio::test]
async fn installing_a_snapshot_replaces_the_state_and_notifies_readers() {
    let leader_dir = TempDir::new().expect("temp dir");
    let follower_dir = TempDir::new().expect("temp dir");
    let (_leader_log, mut leader) = open(leader_dir.path()).expect("open leader");
    let (_follower_log, mut follower) = open(follower_dir.path()).expect("open follower");
    leader.apply(sample_log()).await.expect("apply");
    follower
        .apply([entry(1, 1, promote("stale", 1))])
        .await
        .expect("apply");

    let snapshot = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    let mut changes = follower.reader().subscribe();
    changes.mark_unchanged();
    let mut receiving = follower.begin_receiving_snapshot().await.expect("begin");
    *receiving = *snapshot.snapshot;
    follower
        .install_snapshot(&snapshot.meta, receiving)
        .await
        .expect("install");

    assert!(changes.has_changed().expect("sender alive"));
    let applied = follower.reader().current();
    assert_eq!(applied.last_applied, Some(log_id(2, 4)));
    assert_eq!(applied.state, leader.reader().current().state);
    assert_eq!(
        applied
            .state
            .promoted("g")
            .map(|p| (p.source.as_str(), p.epoch)),
        Some(("b", 2))
    );
    let (last_applied, _) = follower.applied_state().await.expect("applied");
    assert_eq!(last_applied, Some(log_id(2, 4)));
}

#[tokio::test]
async fn purge_removes_more_than_one_chunk() {
    let tmp = TempDir::new().expect("temp dir");
    let (mut log, _sm) = open(tmp.path()).expect("open");
    let n = (PURGE_CHUNK * 2 + 500) as u64;
    let entries: Vec<_> = (1..=n).map(|i| entry(1, i, EntryPayload::Blank)).collect();
    log.blocking_append(entries).await.expect("append");
    log.purge(log_id(1, n - 10)).await.expect("purge");
    let left = log.try_get_log_entries(..).await.expect("entries");
    assert_eq!(left.len(), 10);
    assert_eq!(left[0].log_id, log_id(1, n - 9));
    let state = log.get_log_state().await.expect("log state");
    assert_eq!(state.last_purged_log_id, Some(log_id(1, n - 10)));
    assert_eq!(state.last_log_id, Some(log_id(1, n)));
}

#[tokio::test]
async fn truncate_then_append_replaces_the_conflicting_tail() {
    let tmp = TempDir::new().expect("temp dir");
    let (mut log, _sm) = open(tmp.path()).expect("open");
    log.blocking_append(sample_log()).await.expect("append");
    log.truncate(log_id(2, 3)).await.expect("truncate");
    log.blocking_append([entry(3, 3, EntryPayload::Blank)])
        .await
        .expect("append");
    let ids: Vec<_> = log
        .try_get_log_entries(1..)
        .await
        .expect("entries")
        .iter()
        .map(|e| e.log_id)
        .collect();
    assert_eq!(ids, vec![log_id(1, 1), log_id(1, 2), log_id(3, 3)]);
    assert_eq!(
        log.get_log_state().await.expect("state").last_log_id,
        Some(log_id(3, 3))
    );
}
