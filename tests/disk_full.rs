//! Disk full, for real: highlander's data directory on a small tmpfs that the test mounts
//! (as root), the storage down. Writes fill the disk; then ingest answers 503 with
//! `Retry-After` and a reason that names the disk (never 429, which Prometheus drops), the
//! process stays up, and nothing acknowledged is lost: once the storage comes back and
//! the buffer drains, the space returns, writes are accepted again by themselves, and
//! every acknowledged sample arrives.
//!
//! Without the rights to mount a tmpfs the test says so loudly and does nothing.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use highlander::proto::{Label, Sample, TimeSeries, WriteRequest};

const T0: i64 = 1_700_000_000_000;

/// Write `i`: 100 series, each with a 1 000-byte label of random letters, so that the disk
/// fills with few samples (and the in-test storage decodes them quickly).
fn padded(i: i64) -> WriteRequest {
    let mut state = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut letters = |n: usize| -> String {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(b'a' + (state % 26) as u8)
            })
            .collect()
    };
    let label = |name: &str, value: String| Label {
        name: name.into(),
        value,
    };
    WriteRequest {
        timeseries: (0..100)
            .map(|k| TimeSeries {
                labels: vec![
                    label("__name__", "full".into()),
                    label("pad", letters(1_000)),
                    label("series", format!("{k:03}")),
                ],
                samples: vec![Sample {
                    value: k as f64,
                    timestamp: T0 + i * 1_000,
                }],
                ..TimeSeries::default()
            })
            .collect(),
        metadata: vec![],
    }
}

/// A tmpfs mounted for the test, unmounted when dropped (also when the test panics).
struct Tmpfs {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `64m`); `None` without the rights to.
    fn mount(size: &str) -> Option<Tmpfs> {
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = parent.path().join("fs");
        std::fs::create_dir(&dir).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .ok()?;
        status.success().then_some(Tmpfs {
            dir,
            _parent: parent,
        })
    }

    fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_keeps_every_acknowledged_write_and_recovers_by_itself() {
    let Some(fs) = Tmpfs::mount("64m") else {
        eprintln!(
            "\n*** SKIPPED disk_full: mounting a tmpfs needs root (CAP_SYS_ADMIN); CI runs as root and runs it ***\n"
        );
        return;
    };
    let port = free_port();
    let data = fs.path().join("data");
    let mut node = Node::start_in(
        Some(&data),
        &[
            "--remote-write",
            &format!("http://127.0.0.1:{port}/api/v1/write"),
            "--buffer-compression",
            "never",
        ],
    )
    .await;
    let c = http();
    let url = node.write_url("highlander_source=a");
    let mut acked: BTreeSet<(String, i64)> = BTreeSet::new();
    let mut refusal = None;
    // Bounded: 64 MiB hold about 700 of these writes.
    for i in 0..5_000i64 {
        let req = padded(i);
        let resp = c
            .post(&url)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .body(body(&req))
            .send()
            .await
            .expect("highlander answers");
        let status = resp.status().as_u16();
        if status != 204 {
            let retry_after = resp.headers().contains_key("retry-after");
            refusal = Some((status, retry_after, resp.text().await.unwrap_or_default()));
            break;
        }
        for t in &req.timeseries {
            for s in &t.samples {
                acked.insert((series_key(&t.labels), s.timestamp));
            }
        }
    }
    let (status, retry_after, reason) = refusal.expect("the disk fills up");
    assert_eq!(status, 503, "{reason}");
    assert!(retry_after, "503 carries Retry-After");
    assert!(
        reason.contains("disk"),
        "the reason names the disk: {reason}"
    );
    assert_eq!(reason.trim().lines().count(), 1, "one line: {reason}");
    // The process stays up and keeps answering.
    let again = post(&c, &url, &padded(1_000_000)).await;
    assert_eq!(again.0, 503, "{}", again.1);
    assert_eq!(node.metric("highlander_ready").await, 1.0);
    assert!(
        node.log().contains("ERROR"),
        "an ERROR line says the disk is full"
    );
    eprintln!(
        "disk full after {} acknowledged samples: {reason}",
        acked.len()
    );

    // The storage comes back: the buffer drains, the space returns, writes as large as the
    // refused one are accepted again without a restart. (The drained buffer keeps its
    // shipped segment as the spare; on a nearly full disk the spare gives its space back.)
    let sink = Sink::start_on(port).await;
    wait_until(
        "every acknowledged sample at the storage",
        Duration::from_secs(120),
        || async {
            let got: BTreeSet<(String, i64)> = sink.samples().into_iter().collect();
            acked.is_subset(&got).then_some(())
        },
    )
    .await;
    wait_until("writes accepted again", Duration::from_secs(60), || async {
        (post(&c, &url, &padded(2_000_000)).await.0 == 204).then_some(())
    })
    .await;
    node.kill9();
    drop(fs);
}
