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
            "--node-id",
            "one",
            "--max-in-flight",
            "many",
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
        "node-id",
        "max-in-flight",
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

/// Every flag and environment variable of `highlander serve --help` is in the README's
/// configuration table, and every default the help names is the README's too.
#[test]
fn the_readme_documents_every_serve_flag_with_its_env_and_default() {
    let out = Command::new(env!("CARGO_BIN_EXE_highlander"))
        .args(["serve", "--help"])
        .output()
        .expect("run highlander");
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let table: Vec<&str> = readme
        .split("## Configuration")
        .nth(1)
        .expect("a Configuration section")
        .lines()
        .filter(|l| l.starts_with("| `--"))
        .collect();
    // One option of the help: its first line (at most six spaces in, then `--`) and the
    // lines of its description, up to the next option.
    let mut options: Vec<String> = Vec::new();
    for line in help.lines() {
        let indent = line.len() - line.trim_start().len();
        if indent <= 6 && line.trim_start().starts_with("--") {
            options.push(line.trim().to_owned());
        } else if let Some(last) = options.last_mut() {
            last.push(' ');
            last.push_str(line.trim());
        }
    }
    let mut missing = Vec::new();
    for option in &options {
        let flag = option
            .split(|c: char| c.is_whitespace() || c == '<')
            .next()
            .unwrap_or_default();
        if flag == "--help" {
            continue;
        }
        // The row whose first cell names the flag (other cells may mention it too).
        let named = |r: &&&str| {
            r.split('|')
                .nth(1)
                .is_some_and(|cell| cell.contains(&format!("`{flag}`")))
        };
        let Some(row) = table.iter().find(named) else {
            missing.push(format!("{flag}: no row"));
            continue;
        };
        let flat = option.split_whitespace().collect::<Vec<_>>().join(" ");
        if let Some(env) = flat
            .split("[env: ")
            .nth(1)
            .and_then(|e| e.split(['=', ']']).next())
        {
            if !row.contains(env) {
                missing.push(format!("{flag}: env {env} not in its row"));
            }
        }
        if let Some(default) = flat
            .split("[default: ")
            .nth(1)
            .and_then(|d| d.split(']').next())
        {
            // The help's default, as the README writes it (`1s`, `./data`, ...); the
            // first word is enough for the ones the README explains further.
            let word = default.split([' ', ',', ';']).next().unwrap_or_default();
            if !row.contains(word) {
                missing.push(format!("{flag}: default {default:?} not in its row"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "README configuration table: {missing:#?}"
    );
}
