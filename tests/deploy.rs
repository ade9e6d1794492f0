//! The deploy artefacts: `docker-compose.yml` is valid for docker-compose (validated offline;
//! no Docker engine runs here, the same topology runs for real in tests/cluster.rs and
//! scripts/demo) and keeps its promises (ports on loopback, an admin token, no flapping,
//! Grafana provisioned with a dashboard whose metrics exist), and the Dockerfile keeps
//! its own (non-root, data volume, health check).

use std::path::Path;
use std::process::Command;

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn compose_file_is_valid() {
    let out = Command::new("docker-compose")
        .arg("-f")
        .arg(repo("docker-compose.yml"))
        .args(["config", "-q"])
        .output()
        .expect("docker-compose is missing: install the Debian package docker-compose (scripts/test does)");
    assert!(
        out.status.success(),
        "docker-compose config failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(repo("docker-compose.yml")).expect("compose file");
    for needed in [
        "highlander-1",
        "highlander-2",
        "highlander-3",
        "prometheus-a",
        "prometheus-b",
        "victoriametrics",
        "HIGHLANDER_PEERS",
    ] {
        assert!(
            text.contains(needed),
            "{needed} missing from docker-compose.yml"
        );
    }
    for replica in ["a", "b"] {
        let path = repo(&format!("data/compose/prometheus-{replica}.yml"));
        let conf = std::fs::read_to_string(&path).expect("prometheus config");
        for node in 1..=3 {
            assert!(
                conf.contains(&format!("highlander-{node}:9091/api/v1/write")),
                "{} must write to every node",
                path.display()
            );
        }
    }
}

#[test]
fn prometheus_configs_of_the_demo_are_valid() {
    for replica in ["a", "b"] {
        let out = Command::new("promtool")
            .args(["check", "config", "--syntax-only"])
            .arg(repo(&format!("data/compose/prometheus-{replica}.yml")))
            .output()
            .expect(
                "promtool is missing: install the Debian package prometheus (scripts/test does)",
            );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn dockerfile_runs_as_non_root_with_a_volume_and_a_health_check() {
    let text = std::fs::read_to_string(repo("Dockerfile")).expect("Dockerfile");
    assert!(text.matches("FROM ").count() >= 2, "multi-stage");
    assert!(text.contains("\nUSER highlander"), "non-root user");
    assert!(text.contains("VOLUME [\"/data\"]"));
    assert!(text.contains("HEALTHCHECK") && text.contains("/healthz"));
    assert!(text.contains("--locked"));
}

/// No Docker engine runs here, so the build context is checked by hand: cargo refuses a
/// manifest whose `[[bench]]`/`build` files are missing, even for `--bin highlander`.
#[test]
fn dockerfile_copies_everything_the_manifest_names() {
    let text = std::fs::read_to_string(repo("Dockerfile")).expect("Dockerfile");
    let manifest = std::fs::read_to_string(repo("Cargo.toml")).expect("Cargo.toml");
    let mut needed = vec!["Cargo.toml", "Cargo.lock", "build.rs", "proto", "src"];
    if manifest.contains("[[bench]]") {
        needed.push("benches");
    }
    let copied: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("COPY "))
        .filter(|l| !l.starts_with("--from"))
        .flat_map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            parts[..parts.len().saturating_sub(1)].to_vec()
        })
        .collect();
    for path in needed {
        assert!(
            copied.iter().any(|c| c.trim_end_matches('/') == path),
            "the Dockerfile's build stage does not copy {path} (copied: {copied:?})"
        );
    }
}

/// The compose file's promises: every published port on 127.0.0.1 only, a token for the
/// admin API's mutations on every highlander node, Grafana provisioned from files that
/// exist, a health expiry of at least three scrape intervals (no flapping).
#[test]
fn compose_publishes_on_loopback_protects_the_admin_api_and_cannot_flap() {
    let text = std::fs::read_to_string(repo("docker-compose.yml")).expect("compose file");
    for line in text.lines().map(str::trim) {
        let Some(port) = line.strip_prefix("- \"").filter(|p| p.ends_with('"')) else {
            continue;
        };
        let mapping = port.trim_end_matches('"');
        let is_port = mapping.contains(':')
            && mapping
                .chars()
                .all(|c| c.is_ascii_digit() || c == ':' || c == '.');
        if is_port {
            assert!(
                port.starts_with("127.0.0.1:"),
                "port {port} is published beyond loopback"
            );
        }
    }
    assert!(text.contains("HIGHLANDER_ADMIN_TOKEN_FILE: /run/secrets/admin_token"));
    assert!(
        text.contains("- admin_token"),
        "the nodes get the token secret"
    );
    for file in [
        "data/compose/admin-token",
        "data/compose/cluster-secret",
        "data/compose/grafana/datasources.yml",
        "data/compose/grafana/dashboards.yml",
        "data/grafana-dashboard.json",
    ] {
        assert!(
            text.contains(file),
            "{file} is not referenced by docker-compose.yml"
        );
        assert!(repo(file).is_file(), "{file} is missing");
    }
    let expiry = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("HIGHLANDER_HEALTH_EXPIRY: "))
        .and_then(|v| v.trim().strip_suffix('s'))
        .and_then(|v| v.parse::<u64>().ok())
        .expect("HIGHLANDER_HEALTH_EXPIRY: <seconds>s in docker-compose.yml");
    for replica in ["a", "b"] {
        let conf = std::fs::read_to_string(repo(&format!("data/compose/prometheus-{replica}.yml")))
            .expect("prometheus config");
        let interval = conf
            .lines()
            .find_map(|l| l.trim().strip_prefix("scrape_interval: "))
            .and_then(|v| v.trim().strip_suffix('s'))
            .and_then(|v| v.parse::<u64>().ok())
            .expect("a scrape_interval in seconds");
        assert!(
            expiry >= 3 * interval,
            "health expiry {expiry}s under three scrape intervals of {interval}s: replica {replica} would flap"
        );
    }
}

/// The dashboard the compose file provisions is valid JSON, and every highlander metric it
/// queries is one highlander registers (`src/metrics.rs` names each; a labelled family
/// appears on `/metrics` only once a label value was seen, so a fresh node cannot tell).
#[test]
fn the_grafana_dashboard_queries_only_metrics_that_exist() {
    let text = std::fs::read_to_string(repo("data/grafana-dashboard.json")).expect("dashboard");
    let _: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let source = std::fs::read_to_string(repo("src/metrics.rs")).expect("src/metrics.rs");
    let names = |text: &str, quoted: bool| -> std::collections::BTreeSet<String> {
        let prefix = if quoted {
            "\"highlander_"
        } else {
            "highlander_"
        };
        text.match_indices(prefix)
            .map(|(at, _)| {
                text[at + usize::from(quoted)..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect()
            })
            .collect()
    };
    let registered = names(&source, true);
    assert!(
        registered.len() > 20,
        "found the registered names: {registered:?}"
    );
    let missing: Vec<String> = names(&text, false)
        .into_iter()
        .filter(|name| {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            !registered.contains(base) && !registered.contains(name)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics highlander does not register: {missing:?}"
    );
}
