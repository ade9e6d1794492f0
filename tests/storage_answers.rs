//! What highlander does with a storage's refusals, on real sockets:
//! - refused credentials (401 or 403: an expired or rotated token) quarantine nothing: the
//!   endpoint shows `unauthorized`, one ERROR line says so, every write stays buffered and
//!   is retried, and all of it arrives once the credentials work again;
//! - permanent rejections (400) fill the quarantine only up to its cap: the oldest batches
//!   are dropped, counted and logged;
//! - 503 and 429 with `Retry-After` are retried no sooner than it says, 500 with the
//!   backoff, a storage that hangs past the endpoint's timeout and one that resets every
//!   connection are retried too; nothing is quarantined and every sample arrives.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;

const T0: i64 = 1_700_000_000_000;

async fn endpoint(node: &Node) -> serde_json::Value {
    node.admin_json("/api/v1/queue").await["endpoints"][0].clone()
}

async fn refused_credentials_are_retried_not_quarantined(status: u16) {
    let sink = Sink::start().await;
    sink.set_mode(Mode::Fail(status));
    let node = Node::start(&["--remote-write", &sink.url()]).await;
    let c = http();
    let url = node.write_url("highlander_source=a");
    for i in 0..5 {
        let (code, text) = post(&c, &url, &request("m", 10, 1, T0 + i * 1000)).await;
        assert_eq!(code, 204, "{text}");
    }
    let e = wait_until(
        "the endpoint unauthorized",
        Duration::from_secs(10),
        || async {
            let e = endpoint(&node).await;
            (e["state"] == "unauthorized").then_some(e)
        },
    )
    .await;
    assert!(
        e["last_error"]
            .as_str()
            .is_some_and(|s| s.contains(&format!("HTTP {status}")) && s.contains("credentials")),
        "{e}"
    );
    // Several refused attempts later: still nothing quarantined, one ERROR line.
    wait_until("retries", Duration::from_secs(10), || async {
        (endpoint(&node).await["retries"].as_u64() >= Some(3)).then_some(())
    })
    .await;
    let q = node.admin_json("/api/v1/queue").await;
    assert_eq!(q["quarantined"], 0, "{q}");
    let metric = format!(
        "highlander_shipper_state{{endpoint=\"{}\",state=\"unauthorized\"}}",
        e["name"].as_str().unwrap_or_default()
    );
    assert_eq!(node.metric(&metric).await, 1.0, "{metric}");
    let auth_failures = format!(
        "highlander_shipper_failures_total{{class=\"auth\",endpoint=\"{}\"}}",
        e["name"].as_str().unwrap_or_default()
    );
    assert!(node.metric(&auth_failures).await >= 3.0, "{auth_failures}");
    let log = node.log();
    let errors = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("refuses the credentials"))
        .count();
    assert_eq!(errors, 1, "one ERROR line per state change:\n{log}");

    // The credentials work again: every write arrives, the endpoint recovers.
    sink.set_mode(Mode::Accept);
    sink.wait_samples(50, Duration::from_secs(30)).await;
    wait_until(
        "the endpoint recovered",
        Duration::from_secs(10),
        || async { (endpoint(&node).await["state"] != "unauthorized").then_some(()) },
    )
    .await;
    assert_eq!(node.admin_json("/api/v1/queue").await["quarantined"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_is_retried_and_quarantines_nothing() {
    refused_credentials_are_retried_not_quarantined(401).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_is_retried_and_quarantines_nothing() {
    refused_credentials_are_retried_not_quarantined(403).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_that_rejects_everything_fills_the_quarantine_only_up_to_its_cap() {
    let sink = Sink::start().await;
    sink.set_mode(Mode::Fail(400));
    let node = Node::start(&[
        "--remote-write",
        &sink.url(),
        "--buffer-max-bytes",
        "1MiB",
        "--max-body-bytes",
        "128KiB",
        "--quarantine-max-bytes",
        "16KiB",
    ])
    .await;
    let c = http();
    let url = node.write_url("highlander_source=a");
    // 40 writes of about 700 bytes each once quarantined: 28 KB, more than the cap.
    for i in 0..40 {
        let (code, text) = post(&c, &url, &request("m", 100, 1, T0 + i * 1000)).await;
        assert_eq!(code, 204, "{text}");
    }
    node.wait_drained(Duration::from_secs(20)).await;
    let dropped = wait_until("quarantine drops", Duration::from_secs(10), || async {
        let n = node
            .metric("highlander_wal_quarantine_dropped_total{reason=\"size\"}")
            .await;
        (n > 0.0).then_some(n)
    })
    .await;
    let bytes = node.metric("highlander_wal_quarantined_bytes").await;
    assert!(bytes > 0.0 && bytes <= 16_384.0, "quarantine bytes {bytes}");
    let kept = node.admin_json("/api/v1/queue").await["quarantined"]
        .as_u64()
        .expect("quarantined");
    assert_eq!(
        kept + dropped as u64,
        40,
        "every write quarantined, then kept or dropped"
    );
    // The newest batches are the ones kept.
    let list = node.admin_json("/api/v1/quarantine").await;
    let seqs: Vec<u64> = list["quarantine"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|q| q["seq"].as_u64())
        .collect();
    assert_eq!(seqs.len() as u64, kept);
    assert!(
        seqs.iter().all(|&s| s >= 40 - kept),
        "the newest stay: {seqs:?}"
    );
    let log = node.log();
    assert!(
        log.contains("quarantine limit reached"),
        "an ERROR line says so:\n{log}"
    );
}

/// The gaps between the storage's consecutive attempts at the first write.
fn attempt_gaps(sink: &Sink) -> Vec<Duration> {
    sink.with(|r| r.attempts.windows(2).map(|w| w[1] - w[0]).collect())
}

async fn retry_after_is_honoured(status: u16) {
    let sink = Sink::start().await;
    sink.set_mode(Mode::FailRetryAfter(status, 2));
    let node = Node::start(&["--remote-write", &sink.url()]).await;
    let c = http();
    let url = node.write_url("highlander_source=a");
    assert_eq!(post(&c, &url, &request("m", 5, 1, T0)).await.0, 204);
    wait_until("three attempts", Duration::from_secs(15), || async {
        (sink.with(|r| r.attempts.len()) >= 3).then_some(())
    })
    .await;
    sink.set_mode(Mode::Accept);
    sink.wait_samples(5, Duration::from_secs(10)).await;
    let gaps = attempt_gaps(&sink);
    // Retry-After: 2 is honoured (the jittered backoff alone stays under 1 s this early).
    assert!(
        gaps.iter()
            .take(2)
            .all(|g| *g >= Duration::from_millis(1_900)),
        "{status}: attempts {gaps:?} apart"
    );
    let q = node.admin_json("/api/v1/queue").await;
    assert_eq!(q["quarantined"], 0, "{status} is retried: {q}");
    assert_eq!(sink.samples().len(), 5, "{status}: delivered once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_with_retry_after_is_retried_no_sooner() {
    retry_after_is_honoured(503).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_is_retried_no_sooner() {
    retry_after_is_honoured(429).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_is_retried_with_backoff() {
    let sink = Sink::start().await;
    sink.set_mode(Mode::Fail(500));
    let node = Node::start(&["--remote-write", &sink.url()]).await;
    let c = http();
    let url = node.write_url("highlander_source=a");
    assert_eq!(post(&c, &url, &request("m", 5, 1, T0)).await.0, 204);
    wait_until("four attempts", Duration::from_secs(15), || async {
        (sink.with(|r| r.attempts.len()) >= 4).then_some(())
    })
    .await;
    sink.set_mode(Mode::Accept);
    sink.wait_samples(5, Duration::from_secs(15)).await;
    assert_eq!(node.admin_json("/api/v1/queue").await["quarantined"], 0);
    assert_eq!(sink.samples().len(), 5, "delivered once");
}

/// A storage that takes longer than the endpoint's timeout: the attempt is abandoned and
/// retried. The storage may still have stored the abandoned one, so a sample may arrive
/// twice: the at-least-once delivery the README documents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_that_hangs_past_the_timeout_is_retried() {
    let sink = Sink::start().await;
    sink.set_delay(Duration::from_secs(3));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h.toml");
    std::fs::write(
        &path,
        format!(
            "[[endpoint]]\nname = \"slow\"\nurl = \"{}\"\ntimeout = \"1s\"\n",
            sink.url()
        ),
    )
    .expect("toml");
    let node = Node::start(&["--config", path.to_str().expect("UTF-8")]).await;
    let c = http();
    let url = node.write_url("highlander_source=a");
    assert_eq!(post(&c, &url, &request("m", 5, 1, T0)).await.0, 204);
    let e = wait_until("a timeout", Duration::from_secs(15), || async {
        let e = node.admin_json("/api/v1/queue").await["endpoints"][0].clone();
        let err = e["last_error"].as_str().unwrap_or_default().to_owned();
        err.contains("timeout").then_some(e)
    })
    .await;
    assert!(e["retries"].as_u64() >= Some(1), "{e}");
    sink.set_delay(Duration::ZERO);
    sink.wait_samples(5, Duration::from_secs(15)).await;
    let distinct: BTreeSet<(String, i64)> = sink.samples().into_iter().collect();
    assert_eq!(distinct.len(), 5, "every sample arrives");
    assert_eq!(node.admin_json("/api/v1/queue").await["quarantined"], 0);
}

/// Closes a connection with a reset (SO_LINGER 0), as a crashing peer does.
fn reset(stream: std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads `linger`, which lives for the whole call, on a socket this
    // function owns.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(stream);
}

/// A storage that closes every connection without an answer (a crashing proxy): retried
/// as a network error until a real storage answers on the same address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_that_resets_connections_is_retried() {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let resets = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let closer = {
        let resets = resets.clone();
        std::thread::spawn(move || {
            // Bounded: three connections, then the address is handed over.
            for s in listener.incoming().take(3).flatten() {
                reset(s);
                resets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    let node = Node::start(&[
        "--remote-write",
        &format!("http://127.0.0.1:{port}/api/v1/write"),
    ])
    .await;
    let c = http();
    let url = node.write_url("highlander_source=a");
    assert_eq!(post(&c, &url, &request("m", 5, 1, T0)).await.0, 204);
    closer.join().expect("closer");
    assert_eq!(resets.load(std::sync::atomic::Ordering::Relaxed), 3);
    let e = node.admin_json("/api/v1/queue").await["endpoints"][0].clone();
    assert!(
        e["last_error"]
            .as_str()
            .is_some_and(|s| s.contains("error")),
        "a network error: {e}"
    );
    let sink = Sink::start_on(port).await;
    sink.wait_samples(5, Duration::from_secs(20)).await;
    assert_eq!(node.admin_json("/api/v1/queue").await["quarantined"], 0);
}
