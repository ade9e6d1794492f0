//! The status page after a real switch, in Chromium driven by ChromeDriver (Debian's
//! `chromium-driver`): the switch timeline and its table, the sparklines of the last
//! minutes, and the layout at 800, 1280 and 1920 px — no cell outside its card, no
//! horizontal scroll of the page. A screenshot per width is kept in the test's target
//! directory (`highlander-page-<width>.png`). Fails (never skips) when ChromeDriver is
//! missing: `scripts/test` installs it.

mod common;

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use common::*;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const WIDTHS: [u32; 3] = [800, 1280, 1920];

/// A ChromeDriver process group, killed (browsers included) when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group of our own child; no memory is involved.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver() -> Driver {
    assert!(
        Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
        "{CHROMEDRIVER} or {CHROMIUM} is missing: install the Debian packages `chromium` and \
         `chromium-driver` (./scripts/test does it)"
    );
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let status = format!("{}/status", driver.url);
    wait_until(
        "chromedriver to listen",
        Duration::from_secs(20),
        || async {
            let r = http().get(&status).send().await.ok()?;
            r.status().is_success().then_some(())
        },
    )
    .await;
    driver
}

/// One WebDriver command; panics with the driver's answer when it fails.
async fn command(method: reqwest::Method, url: String, body: Option<Value>) -> Value {
    let mut req = http()
        .request(method, &url)
        .timeout(Duration::from_secs(60));
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    assert!(status.is_success(), "{url}: {status}: {answer}");
    answer["value"].clone()
}

/// A headless Chromium session.
struct Session {
    base: String,
}

impl Session {
    async fn new(driver: &Driver) -> Session {
        let profile = tempfile::tempdir().expect("profile dir");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-quic", "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                         format!("--user-data-dir={}", profile.path().join("p").display())],
            }
        }}});
        let v = command(
            reqwest::Method::POST,
            format!("{}/session", driver.url),
            Some(caps),
        )
        .await;
        // The profile directory lives as long as the browser: keep it.
        std::mem::forget(profile);
        let id = v["sessionId"].as_str().expect("session id");
        Session {
            base: format!("{}/session/{id}", driver.url),
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        command(
            reqwest::Method::POST,
            format!("{}/{path}", self.base),
            Some(body),
        )
        .await
    }

    async fn script(&self, js: &str) -> Value {
        self.post("execute/sync", json!({"script": js, "args": []}))
            .await
    }

    /// Sets the viewport to `width` x 1000 CSS pixels and loads `url` once the window has
    /// its size.
    async fn open(&self, url: &str, width: u32) {
        // The window's outer size includes no frame in headless mode.
        self.post("window/rect", json!({"width": width, "height": 1000}))
            .await;
        self.post("url", json!({ "url": url })).await;
    }

    async fn screenshot(&self, path: &Path) {
        let v = command(
            reqwest::Method::GET,
            format!("{}/screenshot", self.base),
            None,
        )
        .await;
        let png = base64_decode(v.as_str().expect("base64 screenshot"));
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(path, png).expect("screenshot written");
    }

    async fn close(self) {
        let _ = http().delete(&self.base).send().await;
    }
}

/// Standard base64 (WebDriver's screenshots), without a crate for it.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let digits: Vec<u32> = text.bytes().filter_map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, d)| n | d << (18 - 6 * i));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len().saturating_sub(1)]);
    }
    out
}

/// The page's layout problems at its current width: cells, marks and sparklines outside
/// their card, and a page wider than the window.
const LAYOUT_CHECK: &str = r#"
const out = [];
const doc = document.documentElement;
if (doc.scrollWidth > doc.clientWidth + 1) {
  out.push("the page scrolls sideways: " + doc.scrollWidth + " > " + doc.clientWidth);
}
for (const card of document.querySelectorAll(".card")) {
  const c = card.getBoundingClientRect();
  for (const e of card.querySelectorAll("th, td, svg, svg text, .state, strong")) {
    const b = e.getBoundingClientRect();
    if (b.width === 0 && b.height === 0) continue;
    if (b.left < c.left - 1 || b.right > c.right + 1) {
      out.push(e.tagName + " '" + (e.textContent || "").trim().slice(0, 40) + "' spans " +
        Math.round(b.left) + ".." + Math.round(b.right) + " outside its card " +
        Math.round(c.left) + ".." + Math.round(c.right));
    }
  }
}
return { problems: out, width: window.innerWidth,
         ready: !!document.querySelector("article[data-group] .switches-view svg.timeline")
                && !!document.querySelector("tr[data-endpoint] svg.spark") };
"#;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// Writes `source`'s scrape of 200 series every second until `stop`.
fn replica(node: &Node, source: &'static str, weight: u64, stop: Arc<AtomicBool>) {
    let url = node.write_url(&format!(
        "highlander_source={source}&highlander_weight={weight}"
    ));
    tokio::spawn(async move {
        let client = http();
        while !stop.load(Ordering::Relaxed) {
            let t = now_ms() / 1000 * 1000;
            let _ = post(&client, &url, &request("page_layout", 200, 1, t)).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_switch_and_the_last_minutes_at_every_width() {
    let driver = start_driver().await;
    let sink = Sink::start().await;
    let node = Node::start(&[
        "--remote-write",
        &format!("long-term-storage-in-another-region={}", sink.url()),
        "--health-expiry",
        "3s",
    ])
    .await;
    // Two replicas with long names; the first one is killed (stops writing) after 6 s.
    let (stop_a, stop_b) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    replica(
        &node,
        "prometheus-replica-a-0.monitoring",
        10,
        stop_a.clone(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    replica(
        &node,
        "prometheus-replica-b-0.monitoring",
        5,
        stop_b.clone(),
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop_a.store(true, Ordering::Relaxed);

    // The switch, with its handover, in the history.
    let history = wait_until(
        "the switch and its handover",
        Duration::from_secs(20),
        || async {
            let h = node.admin_json("/api/v1/groups/default/history").await;
            let first = &h["switches"][0];
            (first["to"] == "prometheus-replica-b-0.monitoring" && first["handover"].is_object())
                .then_some(h)
        },
    )
    .await;
    let switch = &history["switches"][0];
    assert_eq!(
        switch["from"], "prometheus-replica-a-0.monitoring",
        "{history}"
    );
    assert_eq!(switch["reason"], "expiry", "{history}");
    assert!(
        switch["handover"]["backfilled"].as_u64() > Some(0),
        "{history}"
    );

    // Two trend points for the source and the endpoint: the sampler reads every 10 s.
    wait_until("two trend points", Duration::from_secs(40), || async {
        let t = node.admin_json("/api/v1/trends").await;
        let b = t["sources"]
            .as_array()?
            .iter()
            .find(|s| s["source"] == "prometheus-replica-b-0.monitoring")?
            .clone();
        (b["received"].as_array()?.len() >= 2 && t["endpoints"][0]["sent"].as_array()?.len() >= 2)
            .then_some(())
    })
    .await;

    let url = format!("http://{}/", node.admin);
    let session = Session::new(&driver).await;
    for width in WIDTHS {
        session.open(&url, width).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        let report = loop {
            let r = session.script(LAYOUT_CHECK).await;
            if r["ready"] == true || Instant::now() > deadline {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(
            report["ready"], true,
            "the page rendered at {width} px: {report}"
        );
        assert_eq!(report["width"], width, "the window is {width} px wide");
        let problems = report["problems"].as_array().cloned().unwrap_or_default();
        // The whole page in the screenshot: the window as high as the page.
        let height = session
            .script("return document.documentElement.scrollHeight + window.outerHeight - window.innerHeight;")
            .await;
        let height = height.as_u64().unwrap_or(1000).clamp(600, 4000);
        session
            .post("window/rect", json!({"width": width, "height": height}))
            .await;
        let shot =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("highlander-page-{width}.png"));
        session.screenshot(&shot).await;
        assert!(
            problems.is_empty(),
            "layout at {width} px (screenshot {}): {problems:#?}",
            shot.display()
        );
        // What the switch table and the sparklines say.
        let seen = session
            .script(
                r#"const row = document.querySelector("article[data-group] tr[data-switch-to]");
                   const spark = document.querySelector("tr[data-source] svg.spark");
                   return { row: row && row.textContent,
                            marks: document.querySelectorAll("svg.timeline circle.mark").length,
                            spark: spark && spark.getAttribute("data-points"),
                            lag: !!document.querySelector("tr[data-endpoint] svg.spark.lag") };"#,
            )
            .await;
        let row = seen["row"].as_str().unwrap_or_default();
        assert!(
            row.contains("prometheus-replica-a-0.monitoring → prometheus-replica-b-0.monitoring")
                && row.contains("expiry"),
            "the switch row at {width} px: {seen}"
        );
        assert!(
            seen["marks"].as_u64() >= Some(2),
            "a mark per switch: {seen}"
        );
        assert!(seen["lag"] == true, "the endpoint's lag sparkline: {seen}");
        let points: usize = seen["spark"]
            .as_str()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        assert!(points >= 2, "the source's sparkline: {seen}");
    }
    session.close().await;
    stop_b.store(true, Ordering::Relaxed);
}
