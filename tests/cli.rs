//! The `highlander` client commands against a live node: the tables say what the API says,
//! `--json` is the API's JSON, actions change the node, and failures exit non-zero with
//! the server's message (or a clear one when the admin listener is unreachable).

mod common;

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const TOKEN: &str = "cli-test-token";
const T0: i64 = 1_700_000_000_000;

/// What one client run printed.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `highlander ARGS` with `env` (and none of the caller's HIGHLANDER_ADMIN* vars),
/// killed after 20 s. Blocking: call through [`cli`].
fn run_blocking(args: Vec<String>, env: Vec<(String, String)>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_highlander"))
        .args(&args)
        .env_remove("HIGHLANDER_ADMIN")
        .env_remove("HIGHLANDER_ADMIN_TOKEN")
        .env_remove("HIGHLANDER_ADMIN_TOKEN_FILE")
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn highlander");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("highlander {args:?} did not finish within 20s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    Run {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

/// Runs the client against `node` (off the async workers, so the in-test storage keeps
/// answering meanwhile).
async fn cli(node: &Node, args: &[&str]) -> Run {
    cli_env(node, args, &[]).await
}

async fn cli_env(node: &Node, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    argv.push("--admin".into());
    argv.push(format!("http://{}", node.admin));
    let env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || run_blocking(argv, env))
        .await
        .expect("client run")
}

/// Runs the client and expects success.
async fn ok(node: &Node, args: &[&str]) -> String {
    let mut with_token = args.to_vec();
    with_token.extend(["--token", TOKEN]);
    let r = cli(node, &with_token).await;
    assert_eq!(r.code, 0, "highlander {args:?}: {r:?}");
    assert!(r.stderr.is_empty(), "highlander {args:?}: {r:?}");
    r.stdout
}

async fn write(node: &Node, source: &str, weight: u64, name: &str, t: i64) -> u16 {
    let url = node.write_url(&format!(
        "highlander_source={source}&highlander_weight={weight}"
    ));
    post(&http(), &url, &request(name, 1, 1, t)).await.0
}

async fn start(sink: &Sink, extra: &[&str]) -> Node {
    let remote = format!("lts={}", sink.url());
    let mut args = vec!["--remote-write", remote.as_str(), "--admin-token", TOKEN];
    args.extend_from_slice(extra);
    Node::start(&args).await
}

/// The line of a table that starts with `first`.
fn line<'a>(out: &'a str, first: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(first))
        .unwrap_or_else(|| panic!("no line starting with {first:?} in:\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_commands_show_the_node_groups_queue_and_records() {
    let sink = Sink::start().await;
    let node = start(&sink, &[]).await;
    assert_eq!(write(&node, "a", 10, "m", T0).await, 204);
    assert_eq!(write(&node, "b", 5, "m", T0).await, 202);
    node.wait_drained(Duration::from_secs(10)).await;
    let api_status = node.admin_json("/api/v1/status").await;

    let status = ok(&node, &["status"]).await;
    let instance = api_status["node"]["instance_id"].as_str().expect("id");
    assert!(line(&status, "instance").ends_with(instance), "{status}");
    assert!(line(&status, "role").ends_with("standalone"), "{status}");
    assert!(line(&status, "endpoints").ends_with("lts"), "{status}");
    assert!(line(&status, "uptime").contains("since"), "{status}");

    let groups = ok(&node, &["groups"]).await;
    let default = line(&groups, "default");
    let cols: Vec<&str> = default.split_whitespace().collect();
    assert_eq!(cols[1..3], ["a", "10"], "promoted a, weight 10: {groups}");
    assert!(
        default.contains("a (10, ") && default.contains("b (5, "),
        "{groups}"
    );

    let one = ok(&node, &["groups", "default"]).await;
    assert!(
        line(&one, "promoted").contains("a (weight 10) since"),
        "{one}"
    );
    assert!(line(&one, "a").contains('*'), "a is marked promoted: {one}");
    let b: Vec<&str> = line(&one, "b").split_whitespace().collect();
    assert_eq!(b[1], "5", "{one}");
    assert!(one.contains("no promoted source"), "history: {one}");

    let queue: Value =
        serde_json::from_str(&ok(&node, &["queue", "--json"]).await).expect("queue --json is JSON");
    assert_eq!(queue["endpoints"][0]["name"], "lts", "{queue}");
    assert_eq!(queue["endpoints"][0]["sent_records"], 1, "{queue}");
    assert_eq!(
        queue["next_seq"],
        node.admin_json("/api/v1/queue").await["next_seq"]
    );

    let table = ok(&node, &["queue"]).await;
    let lts: Vec<&str> = line(&table, "lts").split_whitespace().collect();
    assert_eq!(lts[1], "idle", "{table}");
    assert_eq!(
        lts[2], "0/4",
        "no request out, four at most (ordered lanes): {table}"
    );
    assert_eq!(lts[3], "0", "no lag: {table}");

    let endpoints = ok(&node, &["endpoints"]).await;
    assert!(
        line(&endpoints, "lts").ends_with(&sink.url()),
        "{endpoints}"
    );

    // Taken records are deleted within milliseconds: pause the endpoint so the next write
    // stays buffered to be listed.
    ok(&node, &["pause", "lts"]).await;
    assert_eq!(write(&node, "a", 10, "m", T0 + 1000).await, 204);
    let records = ok(&node, &["records", "--limit", "5"]).await;
    let rec: Vec<&str> = records
        .lines()
        .nth(1)
        .expect("one record")
        .split_whitespace()
        .collect();
    assert_eq!(rec[1..3], ["default", "a"], "{records}");
    let seq = rec[0];
    let detail = ok(&node, &["records", seq]).await;
    assert!(detail.contains("m{series=\"00000\"}"), "preview: {detail}");

    assert_eq!(
        ok(&node, &["quarantine"]).await,
        "the quarantine is empty\n"
    );
    let json: Value =
        serde_json::from_str(&ok(&node, &["quarantine", "--json"]).await).expect("JSON");
    assert_eq!(json, serde_json::json!({"quarantine": []}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_unpin_and_failover_move_the_promotion() {
    let sink = Sink::start().await;
    let node = start(&sink, &[]).await;
    assert_eq!(write(&node, "a", 10, "m", T0).await, 204);
    assert_eq!(write(&node, "b", 5, "m", T0).await, 202);
    let promoted = |g: Value| g["promoted"]["source"].as_str().map(str::to_owned);

    let out = ok(&node, &["pin", "default", "b", "--for", "1h"]).await;
    assert!(out.contains("promoted b (weight 5)"), "{out}");
    assert!(out.contains("b (pin, until "), "{out}");
    let g = node.admin_json("/api/v1/groups/default").await;
    assert_eq!(promoted(g.clone()).as_deref(), Some("b"), "{g}");
    assert_eq!(g["pin"]["kind"], "pin");
    assert_eq!(write(&node, "a", 10, "m", T0 + 1000).await, 202, "pinned");

    let out = ok(&node, &["unpin", "default"]).await;
    assert!(out.contains("removed the pin of b"), "{out}");
    assert!(node.admin_json("/api/v1/groups/default").await["pin"].is_null());

    // Unpinned, a's bigger weight counts again; a failover then demotes a (alive and
    // heavier) and holds b.
    assert_eq!(
        write(&node, "a", 10, "m", T0 + 2000).await,
        204,
        "a takes over"
    );
    assert_eq!(write(&node, "b", 5, "m", T0 + 2000).await, 202);
    let out = ok(&node, &["failover", "default"]).await;
    assert!(out.contains("promoted b (weight 5)"), "{out}");
    let g = node.admin_json("/api/v1/groups/default").await;
    assert_eq!(promoted(g.clone()).as_deref(), Some("b"), "{g}");
    assert_eq!(g["pin"]["kind"], "failover", "{g}");

    // The token can come from a file or the environment, too.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).expect("token file");
    let r = cli(
        &node,
        &["unpin", "default", "--token-file", &path_str(&file)],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    let r = cli_env(
        &node,
        &["pin", "default", "a", "--until", "1h ago"],
        &[("HIGHLANDER_ADMIN_TOKEN", TOKEN)],
    )
    .await;
    assert_eq!(r.code, 1, "a pin ending in the past is refused: {r:?}");
    assert!(
        r.stderr.starts_with("highlander: 400 until_in_past: "),
        "{r:?}"
    );
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("utf-8 temp path").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_skip_and_replay_move_an_endpoint() {
    let sink = Sink::start().await;
    // A second, paused endpoint keeps what lts skips buffered, so lts can replay it.
    let archive = Sink::start().await;
    let archive_arg = format!("archive={}", archive.url());
    let node = start(&sink, &["--remote-write", &archive_arg]).await;
    ok(&node, &["pause", "archive"]).await;
    let state = || async {
        let queue = node.admin_json("/api/v1/queue").await;
        let endpoints = queue["endpoints"].as_array().expect("endpoints").clone();
        endpoints
            .into_iter()
            .find(|e| e["name"] == "lts")
            .expect("lts is listed")
    };

    assert_eq!(
        ok(&node, &["pause", "lts"]).await,
        "lts paused: its records stay buffered\n"
    );
    assert_eq!(
        ok(&node, &["pause", "lts"]).await,
        "lts was already paused\n"
    );
    for i in 0..3 {
        assert_eq!(write(&node, "a", 0, "skipped", T0 + i * 1000).await, 204);
    }
    let e = state().await;
    assert_eq!(
        (e["state"].as_str(), e["lag_records"].as_u64()),
        (Some("paused"), Some(3))
    );
    let table = ok(&node, &["queue"]).await;
    let lts: Vec<&str> = line(&table, "lts").split_whitespace().collect();
    assert_eq!(lts[1..4], ["paused", "0/4", "3"], "{table}");

    let next = node.admin_json("/api/v1/queue").await["next_seq"]
        .as_u64()
        .expect("next_seq");
    let out = ok(&node, &["skip", "lts", "--to-seq", &next.to_string()]).await;
    assert!(out.starts_with("lts: skipped 3 records"), "{out}");
    assert_eq!(state().await["lag_records"], 0);

    // Replay the three skipped records (still buffered: archive has not taken them), then
    // resume: they arrive after all.
    let out = ok(&node, &["replay", "lts", "--from-time", "1h ago"]).await;
    assert!(out.starts_with("lts: sending 3 records again"), "{out}");
    assert_eq!(ok(&node, &["resume", "lts"]).await, "lts resumed\n");
    sink.wait_samples(3, Duration::from_secs(10)).await;
    ok(&node, &["resume", "archive"]).await;
    archive.wait_samples(3, Duration::from_secs(10)).await;
    node.wait_drained(Duration::from_secs(10)).await;
    assert_ne!(state().await["state"], "paused");

    // Skip by time: nothing is older than now once drained, so nothing is skipped.
    let out = ok(&node, &["skip", "lts", "--to-time", "now"]).await;
    assert!(out.starts_with("lts: skipped 0 records"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_exit_non_zero_with_the_reason_on_stderr() {
    let sink = Sink::start().await;
    let node = start(&sink, &[]).await;

    let r = cli(&node, &["groups", "nope"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(
        r.stderr, "highlander: 404 unknown_group: no group named \"nope\" has been seen\n",
        "{r:?}"
    );
    assert!(r.stdout.is_empty(), "{r:?}");

    let r = cli(&node, &["pause", "nope", "--token", TOKEN, "--json"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.starts_with("highlander: 404 unknown_endpoint: "),
        "{r:?}"
    );

    // A mutation without the token: 401, with a hint, and nothing changed.
    let r = cli(&node, &["pause", "lts"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.starts_with("highlander: 401 unauthorized: "),
        "{r:?}"
    );
    assert!(r.stderr.contains("--token-file"), "{r:?}");
    assert_ne!(
        node.admin_json("/api/v1/queue").await["endpoints"][0]["state"],
        "paused"
    );
    let r = cli(&node, &["pause", "lts", "--token", "wrong"]).await;
    assert_eq!(r.code, 1, "{r:?}");

    // A bad body is the server's 400, word for word.
    let r = cli(
        &node,
        &[
            "replay",
            "lts",
            "--from-time",
            "yesterday",
            "--token",
            TOKEN,
        ],
    )
    .await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.starts_with("highlander: 400 bad_request: "),
        "{r:?}"
    );

    // Usage problems found before sending anything exit 2.
    let r = cli(&node, &["status", "--token-file", "/nonexistent/token"]).await;
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("cannot read --token-file"), "{r:?}");
    let r = cli(&node, &["skip", "lts"]).await;
    assert_eq!(r.code, 2, "clap: a target is required: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_admin_listener_is_named() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let args = vec!["status".to_owned(), "--admin".to_owned(), url.clone()];
    let r = tokio::task::spawn_blocking(move || run_blocking(args, vec![]))
        .await
        .expect("run");
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.starts_with(&format!(
            "highlander: cannot reach the admin API at {url}/api/v1/status: "
        )),
        "{r:?}"
    );
    assert!(r.stderr.contains("HIGHLANDER_ADMIN"), "{r:?}");

    // The environment variable works as the flag does.
    let r = tokio::task::spawn_blocking(move || {
        run_blocking(
            vec!["queue".into()],
            vec![("HIGHLANDER_ADMIN".into(), format!("127.0.0.1:{port}"))],
        )
    })
    .await
    .expect("run");
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains(&format!("127.0.0.1:{port}/api/v1/queue")),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_reads_need_the_token() {
    let sink = Sink::start().await;
    let node = start(&sink, &["--admin-token-reads"]).await;
    let r = cli(&node, &["queue"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.starts_with("highlander: 401 unauthorized"),
        "{r:?}"
    );
    let out = ok(&node, &["queue"]).await;
    assert!(line(&out, "lts").contains("idle"), "{out}");
}

/// The five start-up lines of the original proxy, word for word: no space before the colon,
/// one `remote address` per storage, nothing after the value. The election's lines keep
/// the seed's space before the colon (`new source : …`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_prints_the_seeds_start_up_lines_word_for_word() {
    let sink = Sink::start().await;
    let second = "http://127.0.0.1:9/api/v1/write";
    let node = Node::start(&["--remote-write", &sink.url(), "--remote-write", second]).await;
    assert_eq!(write(&node, "a", 1, "m", 1_700_000_000_000).await, 204);
    let log = node.log();
    // The message of each line: what follows the target (`highlander::app: `).
    let messages: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_once("highlander::app: ").map(|(_, m)| m))
        .collect();
    let remote = format!("remote address: {}", sink.url());
    let expected = [
        format!("binding address: {}", node.ingest),
        remote,
        format!("remote address: {second}"),
        "health tick: 1s".to_owned(),
        "health expiry: 5s".to_owned(),
    ];
    for line in &expected {
        assert!(
            messages.iter().any(|m| m == line),
            "start-up line {line:?} missing, word for word, in:\n{log}"
        );
    }
    let id = messages
        .iter()
        .find_map(|m| m.strip_prefix("instance ID: "))
        .unwrap_or_else(|| panic!("no `instance ID: ` line in:\n{log}"));
    assert!(!id.is_empty() && !id.contains(' '), "instance ID {id:?}");
    // The election's line keeps the seed's space before the colon.
    wait_until("the election's line", Duration::from_secs(5), || async {
        node.log()
            .contains("new source : 'a' (no current promoted source) (1)")
            .then_some(())
    })
    .await;
}
