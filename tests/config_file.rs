//! The binary's configuration surface: exit code 2 with every problem listed, and a TOML
//! file whose per-endpoint headers and credentials reach the storage.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn invalid_configuration_lists_every_problem_and_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_highlander"))
        .args([
            "serve",
            "--listen",
            "nowhere",
            "--health-expiry",
            "forever",
            "--durability",
            "maybe",
            "--remote-write-protocol",
            "3.0",
        ])
        .output()
        .expect("run highlander");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for word in [
        "listen",
        "health-expiry",
        "durability",
        "remote-write-protocol",
    ] {
        assert!(err.contains(word), "{word} not reported in: {err}");
    }
}

#[test]
fn unknown_field_in_the_file_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h.toml");
    std::fs::write(&path, "health_expiri = \"5s\"\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_highlander"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .expect("run highlander");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("health_expiri"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_headers_and_credentials_from_the_file_reach_the_storage() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken\n").expect("write");
    let path = dir.path().join("h.toml");
    std::fs::write(
        &path,
        format!(
            "[[endpoint]]\nname = \"lts\"\nurl = \"{}\"\nheaders = {{ \"X-Scope-OrgID\" = \"team-a\" }}\nbearer_token_file = \"{}\"\ntimeout = \"5s\"\n",
            sink.url(),
            token.display()
        ),
    )
    .expect("write");
    let node = Node::start(&["--config", path.to_str().expect("utf8 path")]).await;
    let (status, _) = post(
        &http(),
        &node.write_url("highlander_source=a"),
        &request("m", 1, 1, 1_700_000_000_000),
    )
    .await;
    assert_eq!(status, 204);
    sink.wait_samples(1, Duration::from_secs(10)).await;
    let h = sink.with(|r| r.headers[0].clone());
    assert_eq!(h["x-scope-orgid"], "team-a");
    assert_eq!(h["authorization"], "Bearer t0ken");
    let q = node.admin_json("/api/v1/queue").await;
    assert_eq!(q["endpoints"][0]["name"], "lts");
}
