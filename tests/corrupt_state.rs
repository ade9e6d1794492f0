//! Damaged buffer files between two runs: a flipped byte inside one record, a flipped byte
//! in another record's frame header, and a file cut in the middle of its last record.
//! highlander starts, logs exactly what it skipped (ERROR for the damage, WARN for the cut
//! end), delivers every intact record, and serves new writes. Then the buffer's sled
//! database (cursors, floor, quarantine) damaged four ways: highlander starts and delivers
//! every buffered write, or refuses to start with exit code 1 and one line that says what
//! to do, after which it does.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use common::*;

const T0: i64 = 1_700_000_000_000;
const WRITES: usize = 20;

/// The one segment file of a data directory.
fn segment(data_dir: &std::path::Path) -> PathBuf {
    let dir = data_dir.join("wal").join("segments");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("segments dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n != "spare"))
        .collect();
    assert_eq!(files.len(), 1, "one segment: {files:?}");
    files[0].clone()
}

/// Offset and length of each frame of a segment: a 20-byte header (length, sequence,
/// state, checksum), then the record.
fn frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 20 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        if len == 0 || at + 20 + len > bytes.len() {
            break;
        }
        out.push((at, len));
        at += 20 + len;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_records_are_skipped_and_reported_and_the_rest_is_delivered() {
    let port = free_port();
    let mut node = Node::start(&[
        "--remote-write",
        &format!("http://127.0.0.1:{port}/api/v1/write"),
        "--buffer-compression",
        "never",
    ])
    .await;
    let c = http();
    let url = node.write_url("highlander_source=a");
    for i in 0..WRITES {
        let req = request(&format!("w{i:02}"), 10, 1, T0 + i as i64 * 1000);
        assert_eq!(post(&c, &url, &req).await.0, 204);
    }
    node.kill9();

    let path = segment(&node.data_dir);
    let mut bytes = std::fs::read(&path).expect("segment");
    let found = frames(&bytes);
    assert_eq!(found.len(), WRITES, "one frame per write");
    // A byte inside write 5's record, a byte of write 10's frame header, and the file cut
    // in the middle of the last record.
    let (at5, len5) = found[5];
    bytes[at5 + 20 + len5 - 3] ^= 0xff;
    let (at10, _) = found[10];
    bytes[at10 + 6] ^= 0xff;
    let (last, last_len) = found[WRITES - 1];
    bytes.truncate(last + 20 + last_len / 2);
    std::fs::write(&path, &bytes).expect("damaged segment");

    let sink = Sink::start_on(port).await;
    node.restart().await;
    let lost = [5, 10, WRITES - 1];
    let want: BTreeSet<String> = (0..WRITES)
        .filter(|i| !lost.contains(i))
        .map(|i| format!("w{i:02}"))
        .collect();
    let names = wait_until(
        "every intact write at the storage",
        Duration::from_secs(30),
        || async {
            let names: BTreeSet<String> = sink
                .samples()
                .into_iter()
                .map(|(k, _)| {
                    k.split(',')
                        .next()
                        .unwrap_or_default()
                        .trim_start_matches("__name__=")
                        .to_owned()
                })
                .collect();
            want.is_subset(&names).then_some(names)
        },
    )
    .await;
    for i in lost {
        assert!(
            !names.contains(&format!("w{i:02}")),
            "write {i} was damaged: {names:?}"
        );
    }
    let log = node.log();
    for line in [
        "wal: damaged record removed at recovery",
        "wal: damaged bytes in a segment skipped at recovery",
        "wal: cut off the end of a write a crash interrupted",
    ] {
        assert!(log.contains(line), "{line:?} missing in:\n{log}");
    }
    assert!(!log.contains("panicked"), "{log}");
    // It serves new writes.
    assert_eq!(post(&c, &url, &request("after", 1, 1, T0)).await.0, 204);
}

/// One way to damage a sled database between two runs.
#[derive(Debug, Clone, Copy)]
enum SledDamage {
    /// Its log file emptied (a lost or re-created file).
    Emptied,
    /// Its log file cut in half.
    Cut,
    /// 16 bytes flipped in the middle of its log file.
    Flipped,
    /// Its `conf` file overwritten with garbage.
    Conf,
    /// Every file of it gone (a lost volume, an operator's mistake).
    Deleted,
}

impl SledDamage {
    const ALL: [SledDamage; 4] = [
        SledDamage::Emptied,
        SledDamage::Cut,
        SledDamage::Flipped,
        SledDamage::Conf,
    ];

    /// Damages the sled database in `dir`.
    fn apply(self, dir: &std::path::Path) {
        if let SledDamage::Deleted = self {
            std::fs::remove_dir_all(dir).expect("deleted");
            return;
        }
        let db = dir.join("db");
        let mut bytes = std::fs::read(&db).expect("sled's db file");
        match self {
            SledDamage::Emptied => bytes.clear(),
            SledDamage::Cut => bytes.truncate(bytes.len() / 2),
            SledDamage::Flipped => {
                let mid = bytes.len() / 2;
                for b in &mut bytes[mid..mid + 16] {
                    *b ^= 0xff;
                }
            }
            SledDamage::Conf => {
                std::fs::write(dir.join("conf"), b"not a sled config\n").expect("conf");
            }
            SledDamage::Deleted => unreachable!("handled above"),
        }
        std::fs::write(&db, &bytes).expect("damaged db");
    }
}

/// The buffer's sled database (cursors, floor, quarantine) damaged between two runs, four
/// ways. The records are in the segments, so every buffered write is delivered in each
/// case; when the damage took the cursors, one ERROR line says that every storage starts
/// at the oldest buffered record (it receives again what it took: duplicates, no loss).
/// Before this, an emptied database re-created the cursor at the newest record and
/// skipped every buffered write without a word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_buffer_state_database_loses_no_buffered_write() {
    for damage in SledDamage::ALL {
        let sink = Sink::start().await;
        let mut node = Node::start(&["--remote-write", &sink.url()]).await;
        let c = http();
        let url = node.write_url("highlander_source=a");
        // Ten writes delivered (the cursor moves), ten buffered while the storage refuses.
        for i in 0..WRITES {
            if i == WRITES / 2 {
                sink.wait_samples(10 * WRITES / 2, Duration::from_secs(10))
                    .await;
                node.wait_drained(Duration::from_secs(10)).await;
                sink.set_mode(Mode::Fail(503));
            }
            let req = request(&format!("w{i:02}"), 10, 1, T0 + i as i64 * 1000);
            assert_eq!(post(&c, &url, &req).await.0, 204);
        }
        // The cursor's move reaches sled's log within its 100 ms flush.
        tokio::time::sleep(Duration::from_millis(300)).await;
        node.kill9();
        damage.apply(&node.data_dir.join("wal"));
        sink.set_mode(Mode::Accept);
        let wal = node.data_dir.join("wal");
        let refused = match node.try_restart().await {
            Ok(()) => None,
            Err(status) => {
                // Refused: exit code 1 and one line that says what to do, which the
                // operator then does.
                let log = node.log();
                let line = log
                    .lines()
                    .find(|l| l.starts_with("highlander: "))
                    .unwrap_or_else(|| panic!("{damage:?}: no one-line error:\n{log}"));
                assert_eq!(status.code(), Some(1), "{damage:?}: {line}");
                assert!(
                    line.contains("state database") && line.contains("move"),
                    "{damage:?}: {line}"
                );
                for f in ["db", "conf"] {
                    std::fs::rename(wal.join(f), wal.join(format!("{f}.damaged")))
                        .expect("moved aside");
                }
                node.restart().await;
                Some(line.to_owned())
            }
        };
        let want: BTreeSet<String> = (WRITES / 2..WRITES).map(|i| format!("w{i:02}")).collect();
        wait_until(
            &format!("{damage:?}: every buffered write at the storage"),
            Duration::from_secs(20),
            || async {
                let names: BTreeSet<String> =
                    sink.samples().iter().map(|(k, _)| name_of(k)).collect();
                want.is_subset(&names).then_some(())
            },
        )
        .await;
        node.wait_drained(Duration::from_secs(10)).await;
        let log = node.log();
        assert!(!log.contains("panicked"), "{damage:?}:\n{log}");
        let lost_state = log.contains("wal: the buffer's state database has no cursor");
        if matches!(damage, SledDamage::Emptied) || refused.is_some() {
            assert!(lost_state, "{damage:?}: an ERROR line:\n{log}");
        }
        assert_eq!(post(&c, &url, &request("after", 1, 1, T0)).await.0, 204);
        let all = sink.samples();
        let distinct: BTreeSet<&(String, i64)> = all.iter().collect();
        eprintln!(
            "buffer state {damage:?}: refused to start: {refused:?}; {} buffered writes delivered; {} samples received, {} again (duplicates); cursors lost and reset to the oldest record: {lost_state}",
            want.len(),
            all.len(),
            all.len() - distinct.len(),
        );
    }
}

/// `__name__` of a series key.
fn name_of(key: &str) -> String {
    key.split(',')
        .next()
        .unwrap_or_default()
        .trim_start_matches("__name__=")
        .to_owned()
}

const SECRET: &str = "corrupt-state-secret";

/// Three nodes of a cluster on loopback, shipping to `sink`; returns them and `--peers`.
async fn start_cluster(sink: &Sink) -> (Vec<Node>, String) {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peers = peers(&ports);
    let mut nodes = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        nodes.push(
            Node::start(&[
                "--remote-write",
                &sink.url(),
                "--node-id",
                &(i + 1).to_string(),
                "--cluster-listen",
                &format!("127.0.0.1:{port}"),
                "--peers",
                &peers,
                "--cluster-secret",
                SECRET,
                "--health-tick",
                "200ms",
                "--health-expiry",
                "2s",
            ])
            .await,
        );
    }
    (nodes, peers)
}

async fn role(node: &Node) -> String {
    node.admin_json("/api/v1/status").await["role"]
        .as_str()
        .unwrap_or("?")
        .to_owned()
}

/// Writes one request of source `a` to each of `nodes` until every one answers 204;
/// returns its samples.
async fn write_to(nodes: &[&Node], name: &str, t: i64) -> BTreeSet<(String, i64)> {
    let c = http();
    let req = request(name, 5, 1, t);
    wait_until(
        &format!("{name} acknowledged by every live node"),
        Duration::from_secs(30),
        || async {
            for n in nodes {
                if post(&c, &n.write_url("highlander_source=a"), &req).await.0 != 204 {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    req.timeseries
        .iter()
        .map(|s| (series_key(&s.labels), s.samples[0].timestamp))
        .collect()
}

/// A follower's raft database damaged between two runs, four ways, in one cluster:
/// - cut in half, and 16 bytes flipped: sled rolls its log back to the last good entry;
///   the node rejoins and is caught up (before, the leader's raft core panicked on a
///   follower whose log went back, and that node stopped taking part in the cluster);
/// - deleted: the node was a member (`raft-member` beside the raft directory), so it
///   refuses to start as a new node, which could vote twice in one term (before, it
///   started as one, and the leader's raft core panicked on its log going back);
/// - `conf` garbage: sled refuses the database, and the node exits with code 1 and one
///   line that says how to bring it back (before, it printed its error and hung).
/// Then the repair the line names: removed from the cluster, its raft state deleted,
/// started with `--join` and added again, it follows. The others serve throughout and
/// every sample acknowledged reaches the storage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_raft_database_rejoins_or_refuses_with_the_way_back() {
    let sink = Sink::start().await;
    let (mut nodes, _peers) = start_cluster(&sink).await;
    let mut acked = write_to(&nodes.iter().collect::<Vec<_>>(), "before", T0).await;
    let mut f = 0;
    for (i, n) in nodes.iter().enumerate() {
        if role(n).await == "follower" {
            f = i;
        }
    }
    let mut outcomes = Vec::new();
    let mut t = T0;
    for damage in [SledDamage::Cut, SledDamage::Flipped] {
        nodes[f].kill9();
        damage.apply(&nodes[f].data_dir.join("raft"));
        nodes[f].restart().await;
        t += 1000;
        acked.extend(write_to(&nodes.iter().collect::<Vec<_>>(), &format!("{damage:?}"), t).await);
        wait_until(
            &format!("{damage:?}: node {} follows", f + 1),
            Duration::from_secs(30),
            || async { (role(&nodes[f]).await == "follower").then_some(()) },
        )
        .await;
        outcomes.push(format!("{damage:?}: rejoined"));
    }
    let others: Vec<usize> = (0..3).filter(|&i| i != f).collect();
    for damage in [SledDamage::Deleted, SledDamage::Conf] {
        nodes[f].kill9();
        damage.apply(&nodes[f].data_dir.join("raft"));
        let status = nodes[f]
            .try_restart()
            .await
            .expect_err("the node refuses to start");
        let log = nodes[f].log();
        let line = log
            .lines()
            .rev()
            .find(|l| l.starts_with("highlander: "))
            .unwrap_or_else(|| panic!("{damage:?}: no one-line error:\n{log}"))
            .to_owned();
        assert_eq!(status.code(), Some(1), "{damage:?}: {line}");
        assert!(line.contains("cluster remove"), "{damage:?}: {line}");
        outcomes.push(format!("{damage:?}: refused, exit 1: {line}"));
        t += 1000;
        let live: Vec<&Node> = others.iter().map(|&i| &nodes[i]).collect();
        acked.extend(write_to(&live, &format!("{damage:?}"), t).await);
    }

    // The way back the line names.
    let id = (f + 1).to_string();
    let via = nodes[others[0]].admin;
    let listen = nodes[others[0]].admin_json("/api/v1/cluster").await["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["id"] == (f + 1) as u64)
        .and_then(|m| m["addr"].as_str().map(str::to_owned))
        .expect("the damaged node is a member");
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_highlander"))
            .args(args)
            .args(["--admin", &format!("http://{via}")])
            .output()
            .expect("run the CLI");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    cli(&["cluster", "remove", &id]);
    std::fs::remove_dir_all(nodes[f].data_dir.join("raft")).expect("raft dir");
    std::fs::remove_file(nodes[f].data_dir.join("raft-member")).expect("marker");
    nodes[f].add_args(&["--join"]);
    nodes[f].restart().await;
    cli(&["cluster", "add", &id, &listen]);
    wait_until(
        "the repaired node follows",
        Duration::from_secs(30),
        || async { (role(&nodes[f]).await == "follower").then_some(()) },
    )
    .await;
    t += 1000;
    acked.extend(write_to(&nodes.iter().collect::<Vec<_>>(), "repaired", t).await);
    wait_until(
        "every acknowledged sample at the storage",
        Duration::from_secs(30),
        || async {
            let got: BTreeSet<(String, i64)> = sink.samples().into_iter().collect();
            acked.is_subset(&got).then_some(())
        },
    )
    .await;
    for (i, n) in nodes.iter().enumerate() {
        let log = n.log();
        assert!(!log.contains("panicked"), "node {}:\n{log}", i + 1);
    }
    let reverted: usize = nodes
        .iter()
        .map(|n| n.log().matches("follower log is reverted").count())
        .sum();
    eprintln!(
        "raft database of node {}: {outcomes:#?}; repaired and following; {} acknowledged samples all at the storage; \
         the leader caught up a follower whose log went back {reverted} times",
        f + 1,
        acked.len()
    );
}
