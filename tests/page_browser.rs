//! The status page (`GET /` on the admin listener) in a real headless browser: Debian's
//! `chromium` loads it from a live node, runs its script against the live API, and we read
//! the resulting DOM. Fails (never skips) when chromium is missing: `scripts/test` installs
//! it.

mod common;

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const T0: i64 = 1_700_000_000_000;
/// Longest a browser run may take before it is killed.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);

/// A chromium process group, killed (every helper process with it) when dropped.
struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group of our own child; no memory is involved.
        unsafe {
            libc::kill(-(self.0.id() as i32), libc::SIGKILL);
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What one headless run produced.
struct Page {
    dom: String,
    /// chromium's log, console messages included.
    log: String,
}

fn chromium() -> &'static str {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install the Debian package `chromium` \
         (apt-get install -y chromium; ./scripts/test does it)"
    );
    CHROMIUM
}

/// Runs headless chromium on `url` with `extra` flags (a fresh profile each time), bounded
/// by [`BROWSER_TIMEOUT`]. Blocking: call through [`load`].
fn run_browser(url: &str, extra: &[String]) -> Page {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("stdout");
    let err = dir.path().join("stderr");
    let child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        // Its own process group, so the renderer and helpers die with it.
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {CHROMIUM}: {e}"));
    let mut browser = Browser(child);
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    let status = loop {
        if let Some(s) = browser.0.try_wait().expect("wait for chromium") {
            break s;
        }
        if Instant::now() >= deadline {
            panic!(
                "chromium did not finish within {BROWSER_TIMEOUT:?}; its log:\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(browser);
    let page = Page {
        dom: std::fs::read_to_string(&out).unwrap_or_default(),
        log: std::fs::read_to_string(&err).unwrap_or_default(),
    };
    assert!(
        status.success(),
        "chromium exited with {status}:\n{}",
        page.log
    );
    page
}

/// Loads the page and returns the DOM after its script ran (10 s of virtual time: the
/// first fetches and a few refreshes).
async fn load(url: &str) -> Page {
    let url = url.to_owned();
    let page = tokio::task::spawn_blocking(move || {
        run_browser(
            &url,
            &["--virtual-time-budget=10000".into(), "--dump-dom".into()],
        )
    })
    .await
    .expect("browser run");
    assert!(
        page.dom.contains("</html>"),
        "no DOM dumped; chromium's log:\n{}",
        page.log
    );
    assert!(
        !page.log.contains("Uncaught"),
        "the page's script failed:\n{}",
        page.log
    );
    page
}

/// Saves a screenshot of `url` to `path`.
async fn screenshot(url: &str, path: PathBuf) {
    let url = url.to_owned();
    let arg = format!("--screenshot={}", path.display());
    tokio::task::spawn_blocking(move || {
        run_browser(
            &url,
            &[
                "--virtual-time-budget=5000".into(),
                "--hide-scrollbars".into(),
                "--window-size=1280,900".into(),
                arg,
            ],
        )
    })
    .await
    .expect("browser run");
}

/// The element (opening tag to its closing `</tag>`) carrying `attr`, e.g.
/// `data-endpoint="lts"`.
fn element<'a>(dom: &'a str, tag: &str, attr: &str) -> &'a str {
    let at = dom
        .find(attr)
        .unwrap_or_else(|| panic!("no element with {attr} in the DOM:\n{dom}"));
    let start = dom[..at]
        .rfind(&format!("<{tag}"))
        .unwrap_or_else(|| panic!("{attr} is not on a <{tag}>:\n{dom}"));
    let end = dom[start..]
        .find(&format!("</{tag}>"))
        .map(|e| start + e + tag.len() + 3)
        .unwrap_or(dom.len());
    &dom[start..end]
}

/// The value of `attr` in the opening tag of `element`.
fn attribute<'a>(element: &'a str, attr: &str) -> Option<&'a str> {
    let open = &element[..element.find('>')?];
    let from = open.find(&format!("{attr}=\""))? + attr.len() + 2;
    let len = open[from..].find('"')?;
    Some(&open[from..from + len])
}

async fn write(node: &Node, source: &str, weight: u64, t: i64) -> u16 {
    let url = node.write_url(&format!(
        "highlander_source={source}&highlander_weight={weight}"
    ));
    post(&http(), &url, &request("page_test", 1, 1, t)).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_shows_the_promoted_source_and_endpoint_states() {
    chromium();
    let sink = Sink::start().await;
    // A long expiry, so the sources stay promoted while the browser works.
    let node = Node::start(&[
        "--remote-write",
        &format!("lts={}", sink.url()),
        "--health-expiry",
        "5m",
        "--admin-token",
        "page-token",
    ])
    .await;
    let url = format!("http://{}/", node.admin);
    assert_eq!(write(&node, "replica-a", 10, T0).await, 204);
    assert_eq!(write(&node, "replica-b", 5, T0).await, 202);
    node.wait_drained(Duration::from_secs(10)).await;

    let page = load(&url).await;
    let instance = node.admin_json("/api/v1/status").await["node"]["instance_id"]
        .as_str()
        .expect("instance id")
        .to_owned();
    assert!(page.dom.contains(&instance), "instance id shown");
    let banner = element(&page.dom, "p", "id=\"banner\"");
    assert!(
        banner.contains("hidden"),
        "no banner while healthy: {banner}"
    );
    let group = element(&page.dom, "article", "data-group=\"default\"");
    let promoted = element(group, "strong", "class=\"promoted\"");
    assert!(promoted.ends_with(">replica-a</strong>"), "{promoted}");
    assert!(
        element(group, "tr", "data-source=\"replica-b\"").contains(">5<"),
        "the standby and its weight are listed: {group}"
    );
    let row = element(&page.dom, "tr", "data-endpoint=\"lts\"");
    let state = attribute(row, "data-state").expect("data-state");
    assert!(["idle", "shipping"].contains(&state), "{row}");
    assert!(
        row.contains(&format!("class=\"state state-{state}\">{state}</span>")),
        "{row}"
    );

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("highlander-page.png");
    screenshot(&url, shot.clone()).await;
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot at {}",
        shot.display()
    );

    // The storage fails: the endpoint backs off, and the page says so with the error.
    sink.set_mode(Mode::Fail(503));
    assert_eq!(write(&node, "replica-a", 10, T0 + 1000).await, 204);
    wait_until(
        "the endpoint to back off",
        Duration::from_secs(20),
        || async {
            let q = node.admin_json("/api/v1/queue").await;
            let e = &q["endpoints"][0];
            (["backoff", "failing"].contains(&e["state"].as_str().unwrap_or(""))
                && e["last_error"].is_string())
            .then_some(())
        },
    )
    .await;
    let page = load(&url).await;
    let row = element(&page.dom, "tr", "data-endpoint=\"lts\"");
    let state = attribute(row, "data-state").expect("data-state");
    assert!(["backoff", "failing"].contains(&state), "{row}");
    assert!(
        row.contains(&format!("class=\"state state-{state}\">{state}</span>")),
        "{row}"
    );
    let error = element(row, "span", "class=\"last-error\"");
    assert!(error.contains("503"), "the last error is shown: {row}");
    let lag = element(row, "td", "data-lag-records");
    assert_eq!(attribute(lag, "data-lag-records"), Some("1"), "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_asks_for_the_token_when_reads_are_protected() {
    chromium();
    let node = Node::start(&["--admin-token", "page-token", "--admin-token-reads"]).await;
    let page = load(&format!("http://{}/", node.admin)).await;
    let form = element(&page.dom, "form", "id=\"token-form\"");
    assert!(
        !form[..form.find('>').unwrap_or(0)].contains("hidden"),
        "token form shown: {form}"
    );
    let banner = element(&page.dom, "p", "id=\"banner\"");
    assert!(banner.contains("needs a token"), "{banner}");
    assert!(!banner.contains("page-token"), "{banner}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_is_served_self_contained_and_uncached() {
    let node = Node::start(&[]).await;
    let resp = http()
        .get(format!("http://{}/", node.admin))
        .send()
        .await
        .expect("admin reachable");
    assert_eq!(resp.status(), 200);
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    assert_eq!(header("cache-control"), "no-store");
    assert!(header("content-security-policy").contains("default-src 'none'"));
    let body = resp.text().await.expect("body");
    for external in [
        "src=\"http",
        "href=\"http",
        "src=\"//",
        "@import",
        "url(http",
    ] {
        assert!(!body.contains(external), "external asset: {external}");
    }
    assert!(!body.contains("innerHTML"), "data goes in as text only");
}
