//! Damaged buffer files between two runs: a flipped byte inside one record, a flipped byte
//! in another record's frame header, and a file cut in the middle of its last record.
//! highlander starts, logs exactly what it skipped (ERROR for the damage, WARN for the cut
//! end), delivers every intact record, and serves new writes.

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
