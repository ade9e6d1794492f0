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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;

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

/// How [`RawStorage`] treats the body of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// Reads it at this many bytes per second, then stores it and answers 204, also when
    /// the sender has given up meanwhile (as a real storage that commits what it read).
    SlowRead(usize),
    /// Reads half of it, answers 204 and closes the connection: a storage (or a proxy in
    /// front of one) that claims a write it never read.
    HalfThenOk,
    /// Reads it whole, stores it, answers 204.
    Honest,
}

/// What [`RawStorage`] did with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Read whole, stored, answered 204.
    Stored,
    /// Read whole and stored, but the sender had gone before the answer.
    StoredUnanswered,
    /// Read half, answered 204, closed.
    Lied,
    /// The sender went away while the body was being read.
    Abandoned,
}

/// A storage on a raw socket that misbehaves in ways an HTTP framework would not let it:
/// it reads the body slowly, or answers before reading all of it. What it stores is
/// decoded per sample.
struct RawStorage {
    url: String,
    body: Arc<Mutex<Body>>,
    stored: Arc<Mutex<Vec<(String, i64)>>>,
    /// (body bytes, what happened), in order.
    requests: Arc<Mutex<Vec<(usize, Outcome)>>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

impl RawStorage {
    fn start(body: Body) -> RawStorage {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
        // A small receive buffer (inherited by accepted sockets), so that a slow reader
        // holds the sender back rather than the kernel taking the whole body at once.
        set_rcvbuf(&listener, 8 << 10);
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!(
            "http://{}/api/v1/write",
            listener.local_addr().expect("addr")
        );
        let mut storage = RawStorage {
            url,
            body: Arc::new(Mutex::new(body)),
            stored: Arc::default(),
            requests: Arc::default(),
            stop: Arc::default(),
            acceptor: None,
        };
        let (b, s, r, stop) = (
            storage.body.clone(),
            storage.stored.clone(),
            storage.requests.clone(),
            storage.stop.clone(),
        );
        let acceptor = std::thread::spawn(move || {
            // Bounded: until `stop`, which the storage's drop sets.
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (b, s, r) = (b.clone(), s.clone(), r.clone());
                        std::thread::spawn(move || serve_raw(conn, &b, &s, &r));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        storage.acceptor = Some(acceptor);
        storage
    }

    fn set_body(&self, body: Body) {
        *self.body.lock().expect("body") = body;
    }

    fn stored(&self) -> Vec<(String, i64)> {
        self.stored.lock().expect("stored").clone()
    }

    fn requests(&self) -> Vec<(usize, Outcome)> {
        self.requests.lock().expect("requests").clone()
    }
}

impl Drop for RawStorage {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

fn set_rcvbuf(listener: &std::net::TcpListener, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt reads `bytes`, which lives for the whole call, on a socket the
    // caller owns.
    unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Serves the requests of one connection (HTTP/1.1 with Content-Length, as highlander
/// sends them) until the sender closes it or the storage closes it after a lie.
fn serve_raw(
    mut conn: std::net::TcpStream,
    body: &Mutex<Body>,
    stored: &Mutex<Vec<(String, i64)>>,
    requests: &Mutex<Vec<(usize, Outcome)>>,
) {
    use std::io::{Read, Write};
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let mut buf = Vec::new();
    // Bounded: each round serves one request or returns.
    for _ in 0..10_000 {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("highlander sends a Content-Length");
        buf.drain(..head_end);
        let mode = *body.lock().expect("body");
        let (want, pace) = match mode {
            Body::SlowRead(rate) => (len, Some(rate)),
            Body::HalfThenOk => (len / 2, None),
            Body::Honest => (len, None),
        };
        let mut gone = false;
        while buf.len() < want {
            let step = pace.map_or(64 << 10, |rate| (rate / 10).max(1));
            let mut chunk = vec![0u8; step.min(want - buf.len())];
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => {
                    gone = true;
                    break;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if pace.is_some() {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let record = |o| requests.lock().expect("requests").push((len, o));
        if gone && buf.len() < want {
            record(Outcome::Abandoned);
            return;
        }
        if mode == Body::HalfThenOk {
            let _ = conn.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
            record(Outcome::Lied);
            return;
        }
        let body: Vec<u8> = buf.drain(..len).collect();
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&body)
            .expect("a snappy body");
        let wr = highlander::proto::WriteRequest::decode(raw.as_slice()).expect("a 1.0 body");
        stored
            .lock()
            .expect("stored")
            .extend(wr.timeseries.iter().flat_map(|t| {
                let k = series_key(&t.labels);
                t.samples.iter().map(move |s| (k.clone(), s.timestamp))
            }));
        let answered = conn
            .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            .and_then(|()| conn.flush())
            .is_ok();
        record(if answered && !gone {
            Outcome::Stored
        } else {
            Outcome::StoredUnanswered
        });
        if gone {
            return;
        }
    }
}

/// The samples of `reqs`, as the storages key them.
fn samples_of(reqs: &[highlander::proto::WriteRequest]) -> BTreeSet<(String, i64)> {
    reqs.iter()
        .flat_map(|r| {
            r.timeseries.iter().flat_map(|t| {
                let k = series_key(&t.labels);
                t.samples.iter().map(move |s| (k.clone(), s.timestamp))
            })
        })
        .collect()
}

/// A storage that reads at 1 KB/s. A small request is read within the endpoint's timeout
/// and delivered once. A big one is not: it is abandoned at the timeout and retried (the
/// README: timeouts are retried forever), nothing is quarantined, and the writers are
/// answered at full speed meanwhile. Once the storage reads at full speed every sample is
/// there; a sample arrives twice only when the storage stored an attempt that highlander
/// had given up on (at least once, as documented).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_that_reads_at_1_kb_per_second_is_retried_past_the_timeout() {
    let storage = RawStorage::start(Body::SlowRead(1_000));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h.toml");
    std::fs::write(
        &path,
        format!(
            "[[endpoint]]\nname = \"slow\"\nurl = \"{}\"\ntimeout = \"2s\"\n",
            storage.url
        ),
    )
    .expect("toml");
    let node = Node::start(&["--config", path.to_str().expect("UTF-8")]).await;
    let c = http();
    let url = node.write_url("highlander_source=a");

    // Small: ~200 bytes, read in well under the 2 s timeout.
    let small = request("small", 3, 1, T0);
    assert_eq!(post(&c, &url, &small).await.0, 204);
    wait_until("the small write read", Duration::from_secs(10), || async {
        (storage.stored().len() == 3).then_some(())
    })
    .await;
    // Big: random-looking label values, so snappy cannot shrink it below what 1 KB/s
    // reads in three timeouts.
    let mut big = request("big", 400, 1, T0);
    for (i, t) in big.timeseries.iter_mut().enumerate() {
        t.labels[1].value = format!(
            "{:016x}",
            (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        );
    }
    let big_len = body(&big).len();
    assert!(big_len > 6_000, "the big body is {big_len} bytes");
    let started = std::time::Instant::now();
    assert_eq!(post(&c, &url, &big).await.0, 204);
    let e = wait_until(
        "two attempts abandoned at the timeout",
        Duration::from_secs(30),
        || async {
            let e = endpoint(&node).await;
            let timed_out = e["last_error"]
                .as_str()
                .is_some_and(|s| s.contains("timeout"));
            (timed_out && e["retries"].as_u64() >= Some(2)).then_some(e)
        },
    )
    .await;
    // Writers are not held up by the slow storage.
    let t = std::time::Instant::now();
    let later = request("later", 3, 1, T0 + 1000);
    assert_eq!(post(&c, &url, &later).await.0, 204);
    let ingest = t.elapsed();
    assert!(ingest < Duration::from_secs(1), "a write took {ingest:?}");
    assert_eq!(node.admin_json("/api/v1/queue").await["quarantined"], 0);

    storage.set_body(Body::Honest);
    let want = samples_of(&[small.clone(), big.clone(), later.clone()]);
    wait_until(
        "every sample at the storage",
        Duration::from_secs(60),
        || async {
            let got: BTreeSet<(String, i64)> = storage.stored().into_iter().collect();
            want.is_subset(&got).then_some(())
        },
    )
    .await;
    node.wait_drained(Duration::from_secs(20)).await;
    let stored = storage.stored();
    let count = |k: &(String, i64)| stored.iter().filter(|s| *s == k).count();
    for k in samples_of(&[small, later]) {
        assert_eq!(count(&k), 1, "{k:?} was never retried, so it arrives once");
    }
    let requests = storage.requests();
    assert_eq!(node.admin_json("/api/v1/queue").await["quarantined"], 0);
    eprintln!(
        "1 KB/s storage: big body {big_len} B, {} retries (last: {}), {} s from the big write to its delivery \
         once the storage sped up; {} samples stored, {} distinct; requests (bytes, outcome): {requests:?}",
        e["retries"],
        e["last_error"],
        started.elapsed().as_secs(),
        stored.len(),
        want.len(),
    );
}

/// A storage that answers 204 after reading half of the body, then closes. When the
/// answer comes before highlander has sent the whole body (a body bigger than the socket
/// buffers), the write was not delivered: it is retried, and every sample arrives once
/// the storage reads whole bodies again. Nothing is quarantined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_that_answers_2xx_after_half_the_body_gets_it_again() {
    let storage = RawStorage::start(Body::HalfThenOk);
    let node = Node::start(&["--remote-write", &storage.url]).await;
    let c = http();
    let url = node.write_url("highlander_source=a");
    // Its first half must be more than the kernel's send buffer can take (4 MiB here, so
    // about 12 MB of snappy), else highlander has handed it all over when the answer comes
    // and cannot tell. Each series costs about 34 bytes.
    let wmem_max: usize = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(4 << 20);
    let mut big = request("half", 2 * (wmem_max + (2 << 20)) / 34, 1, T0);
    for (i, t) in big.timeseries.iter_mut().enumerate() {
        t.labels[1].value = format!(
            "{:016x}{:016x}",
            (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            (i as u64 + 7).wrapping_mul(0xbf58_476d_1ce4_e5b9)
        );
    }
    let big_len = body(&big).len();
    assert_eq!(post(&c, &url, &big).await.0, 204);
    wait_until("two lies", Duration::from_secs(30), || async {
        (storage
            .requests()
            .iter()
            .filter(|(_, o)| *o == Outcome::Lied)
            .count()
            >= 2)
            .then_some(())
    })
    .await;
    storage.set_body(Body::Honest);
    let want = samples_of(std::slice::from_ref(&big));
    wait_until(
        "every sample at the storage",
        Duration::from_secs(60),
        || async {
            let got: BTreeSet<(String, i64)> = storage.stored().into_iter().collect();
            want.is_subset(&got).then_some(())
        },
    )
    .await;
    node.wait_drained(Duration::from_secs(20)).await;
    let stored = storage.stored();
    let e = endpoint(&node).await;
    assert_eq!(node.admin_json("/api/v1/queue").await["quarantined"], 0);
    assert_eq!(
        stored.len(),
        want.len(),
        "stored once: the lies stored nothing"
    );
    eprintln!(
        "half-body 2xx storage: body {big_len} B, requests (bytes, outcome): {:?}; {} retries, last error {}",
        storage.requests(),
        e["retries"],
        e["last_error"]
    );
}
