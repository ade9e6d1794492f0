//! Release hygiene: the declared `rust-version` is the true minimum of the locked
//! dependencies, `--version` names the revision and the build date, and the license and
//! changelog files exist.

use std::process::Command;

/// `1.89`, `1.88.0` → comparable numbers.
fn version(v: &str) -> Vec<u64> {
    let mut parts: Vec<u64> = v.split('.').map(|p| p.parse().unwrap_or(0)).collect();
    parts.resize(3, 0);
    parts
}

#[test]
fn no_locked_dependency_needs_a_newer_rust_than_ours() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let ours = packages
        .iter()
        .find(|p| p["name"] == "highlander")
        .and_then(|p| p["rust_version"].as_str())
        .expect("highlander declares a rust-version");
    let too_new: Vec<String> = packages
        .iter()
        .filter_map(|p| {
            let needs = p["rust_version"].as_str()?;
            (version(needs) > version(ours))
                .then(|| format!("{} {} needs {needs}", p["name"], p["version"]))
        })
        .collect();
    assert!(
        too_new.is_empty(),
        "rust-version {ours} is below what the lock file needs: {too_new:?}"
    );
    let bench = packages
        .iter()
        .find(|p| p["name"] == "highlander-bench")
        .and_then(|p| p["rust_version"].as_str());
    assert_eq!(
        bench,
        Some(ours),
        "the workspace crates declare the same rust-version"
    );
}

#[test]
fn version_names_the_revision_and_the_build_date() {
    let out = Command::new(env!("CARGO_BIN_EXE_highlander"))
        .arg("--version")
        .output()
        .expect("highlander runs");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let prefix = format!("highlander {} (revision ", env!("CARGO_PKG_VERSION"));
    let rest = text
        .trim()
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{text:?} should start with {prefix:?}"));
    let (revision, date) = rest
        .strip_suffix(')')
        .and_then(|r| r.split_once(", built "))
        .unwrap_or_else(|| panic!("revision and build date expected: {text:?}"));
    assert!(
        revision == "unknown"
            || (revision.len() == 12 && revision.bytes().all(|b| b.is_ascii_hexdigit())),
        "{revision:?}"
    );
    let parts: Vec<&str> = date.split('-').collect();
    assert!(
        parts.len() == 3 && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit())),
        "{date:?}"
    );
}

#[test]
fn the_license_and_the_changelog_are_there() {
    let root = env!("CARGO_MANIFEST_DIR");
    let license = std::fs::read_to_string(format!("{root}/LICENSE")).expect("LICENSE");
    assert!(license.contains("Apache License") && license.contains("Version 2.0"));
    assert_eq!(env!("CARGO_PKG_LICENSE"), "Apache-2.0");
    let changelog = std::fs::read_to_string(format!("{root}/CHANGELOG.md")).expect("CHANGELOG.md");
    assert!(changelog.contains(&format!("## [{}]", env!("CARGO_PKG_VERSION"))));
}

/// Every relative link of the user's documentation (README, docs/, bench/README.md) names
/// a file of the repository: moving a page cannot leave a dead link behind.
#[test]
fn the_docs_links_name_files_that_exist() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = vec![root.join("README.md"), root.join("bench/README.md")];
    for entry in std::fs::read_dir(root.join("docs")).expect("docs/") {
        pages.push(entry.expect("docs entry").path());
    }
    let mut dead = Vec::new();
    for page in pages
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
    {
        let text = std::fs::read_to_string(page).expect("page");
        for (_, rest) in text.match_indices("](").map(|(i, _)| ((), &text[i + 2..])) {
            let Some(target) = rest.split(')').next() else {
                continue;
            };
            let target = target.split('#').next().unwrap_or_default();
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let dir = page.parent().expect("page dir");
            if !dir.join(target).exists() {
                dead.push(format!("{}: {target}", page.display()));
            }
        }
    }
    assert!(pages.len() >= 3, "pages found: {pages:?}");
    assert!(dead.is_empty(), "dead links: {dead:?}");
}
