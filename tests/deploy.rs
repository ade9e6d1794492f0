//! The deploy artefacts: `docker-compose.yml` is valid for docker-compose (validated offline;
//! no Docker engine runs here, the same topology runs for real in tests/cluster.rs), and the
//! Dockerfile keeps its promises (non-root, data volume, health check).

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
