//! Config tests: the example file, precedence, and all problems at once.

use super::*;
use crate::shipper::Auth;
use crate::wal::{Compression, Durability, FullPolicy};

fn args(flags: &[&str]) -> ServeArgs {
    use clap::Parser;
    let mut argv = vec!["highlander", "serve"];
    argv.extend_from_slice(flags);
    match Cli::try_parse_from(argv).expect("flags parse").command {
        Command::Serve(a) => *a,
        other => panic!("parsed as {other:?}, not serve"),
    }
}

#[test]
fn example_config_in_data_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/highlander.toml");
    let file = load_file(&path).expect("example parses");
    let c = Config::from_parts(&ServeArgs::default(), &file).expect("example is valid");
    assert_eq!(c.shipper.endpoints.len(), 1);
    let e = &c.shipper.endpoints[0];
    assert_eq!(e.name, "victoria");
    assert_eq!(
        e.headers,
        vec![("X-Scope-OrgID".to_owned(), "team-a".to_owned())]
    );
    assert_eq!(c.election.health_expiry, Duration::from_secs(5));
}

#[test]
fn defaults_are_the_documented_ones() {
    let c = Config::from_parts(&args(&[]), &FileConfig::default()).expect("defaults valid");
    assert_eq!(c.ingest.listen.to_string(), "0.0.0.0:9091");
    assert_eq!(c.admin.listen.to_string(), "127.0.0.1:9092");
    assert_eq!(c.data_dir, PathBuf::from("./data"));
    assert_eq!(c.election.health_tick, Duration::from_secs(1));
    assert_eq!(c.election.health_expiry, Duration::from_secs(5));
    assert_eq!(c.wal.durability, Durability::Sync);
    assert_eq!(c.wal.full_policy, FullPolicy::DropOldest);
    assert_eq!(c.wal.compression, Compression::Auto);
    assert_eq!(c.shipper.endpoints.len(), 1);
    assert_eq!(c.shipper.endpoints[0].url.as_str(), DEFAULT_REMOTE_WRITE);
}

#[test]
fn remote_write_forms() {
    let c = Config::from_parts(
        &args(&[
            "--remote-write",
            "vm=http://vm:8428",
            "--remote-write",
            "https://mimir.example:443/api/v1/push",
        ]),
        &FileConfig::default(),
    )
    .expect("valid");
    let e = &c.shipper.endpoints;
    assert_eq!(e[0].name, "vm");
    assert_eq!(
        e[0].url.as_str(),
        "http://vm:8428/api/v1/write",
        "a bare URL gets the path"
    );
    assert_eq!(e[1].name, "mimir.example:443");
    assert_eq!(e[1].url.path(), "/api/v1/push");
}

#[test]
fn flags_override_the_file() {
    let file: FileConfig =
        toml::from_str("health_expiry = \"9s\"\nlisten = \"127.0.0.1:1\"").expect("toml");
    let c = Config::from_parts(&args(&["--listen", "127.0.0.1:2"]), &file).expect("valid");
    assert_eq!(c.ingest.listen.port(), 2);
    assert_eq!(c.election.health_expiry, Duration::from_secs(9));
}

#[test]
fn every_problem_is_reported_at_once() {
    let e = Config::from_parts(
        &args(&[
            "--listen",
            "nowhere",
            "--health-tick",
            "soon",
            "--durability",
            "maybe",
            "--remote-write",
            "ftp://x",
            "--buffer-max-bytes",
            "lots",
        ]),
        &FileConfig::default(),
    )
    .expect_err("invalid");
    assert_eq!(e.problems.len(), 5, "{e}");
    for word in [
        "listen",
        "health-tick",
        "durability",
        "remote-write",
        "buffer-max-bytes",
    ] {
        assert!(e.to_string().contains(word), "{word} missing in: {e}");
    }
}

#[test]
fn cross_field_rules() {
    let e = Config::from_parts(
        &args(&[
            "--health-tick",
            "10s",
            "--health-expiry",
            "5s",
            "--listen",
            "127.0.0.1:9092",
        ]),
        &FileConfig::default(),
    )
    .expect_err("invalid");
    assert_eq!(e.problems.len(), 2, "{e}");
    let e = Config::from_parts(
        &args(&[
            "--remote-write",
            "http://a:1",
            "--remote-write",
            "http://a:1/other",
        ]),
        &FileConfig::default(),
    )
    .expect_err("duplicate names");
    assert!(e.to_string().contains("used twice"), "{e}");
}

#[test]
fn unknown_file_fields_are_refused() {
    let r: Result<FileConfig, _> = toml::from_str("health_expiri = \"5s\"");
    assert!(r.is_err());
    let r: Result<FileConfig, _> =
        toml::from_str("[[endpoint]]\nurl = \"http://a\"\npasword = \"x\"");
    assert!(r.is_err());
}

#[test]
fn endpoint_auth_from_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("token");
    std::fs::write(&secret, "s3cret\n").expect("write");
    let text = format!(
        "[[endpoint]]\nurl = \"http://a\"\nbearer_token_file = \"{}\"\n[[endpoint]]\nname = \"b\"\nurl = \"http://b\"\nbasic_auth = {{ username = \"u\", password = \"p\" }}\n",
        secret.display()
    );
    let file: FileConfig = toml::from_str(&text).expect("toml");
    let c = Config::from_parts(&ServeArgs::default(), &file).expect("valid");
    assert_eq!(c.shipper.endpoints[0].auth, Auth::Bearer("s3cret".into()));
    assert_eq!(
        c.shipper.endpoints[1].auth,
        Auth::Basic {
            username: "u".into(),
            password: "p".into()
        }
    );
    let bad: FileConfig = toml::from_str("[[endpoint]]\nurl = \"http://a\"\nbearer_token = \"x\"\nbasic_auth = { username = \"u\", password = \"p\" }").expect("toml");
    assert!(Config::from_parts(&ServeArgs::default(), &bad).is_err());
}

fn cluster_args(extra: &[&str]) -> ServeArgs {
    let mut flags = vec![
        "--node-id",
        "1",
        "--peers",
        "1=127.0.0.1:9093,2=127.0.0.1:9094,3=127.0.0.1:9095",
        "--cluster-secret",
        "s3cret",
    ];
    flags.extend_from_slice(extra);
    args(&flags)
}

#[test]
fn cluster_tls_from_flags_or_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = crate::cluster::tls::testing::files(dir.path());
    let (cert, key) = (
        tls.cert.display().to_string(),
        tls.key.display().to_string(),
    );
    let ca = tls.ca.as_ref().expect("ca").display().to_string();
    let c = Config::from_parts(
        &cluster_args(&[
            "--cluster-tls-cert",
            &cert,
            "--cluster-tls-key",
            &key,
            "--cluster-tls-ca",
            &ca,
        ]),
        &FileConfig::default(),
    )
    .expect("valid");
    assert_eq!(c.cluster.expect("cluster").tls, Some(tls.clone()));

    let file: FileConfig = toml::from_str(&format!(
        "[cluster]\ntls_cert = {cert:?}\ntls_key = {key:?}\n"
    ))
    .expect("toml");
    let c = Config::from_parts(&cluster_args(&[]), &file).expect("valid");
    let from_file = c.cluster.expect("cluster").tls.expect("tls");
    assert_eq!(from_file.ca, None, "without a CA: the system's roots");

    let c = Config::from_parts(&cluster_args(&[]), &FileConfig::default()).expect("valid");
    assert_eq!(c.cluster.expect("cluster").tls, None);
}

#[test]
fn cluster_tls_problems_are_reported_with_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = crate::cluster::tls::testing::files(dir.path());
    let cert = tls.cert.display().to_string();
    let e = Config::from_parts(
        &cluster_args(&["--cluster-tls-cert", &cert, "--listen", "nowhere"]),
        &FileConfig::default(),
    )
    .expect_err("key missing");
    assert_eq!(e.problems.len(), 2, "{e}");
    assert!(e.to_string().contains("both or neither"), "{e}");

    let ca = tls.ca.as_ref().expect("ca").display().to_string();
    let e = Config::from_parts(
        &cluster_args(&["--cluster-tls-ca", &ca]),
        &FileConfig::default(),
    )
    .expect_err("a CA alone");
    assert!(
        e.to_string()
            .contains("cluster-tls-ca needs cluster-tls-cert"),
        "{e}"
    );

    // Unusable files are configuration problems too, each named.
    let missing = dir.path().join("missing.pem").display().to_string();
    let e = Config::from_parts(
        &cluster_args(&[
            "--cluster-tls-cert",
            &missing,
            "--cluster-tls-key",
            &tls.key.display().to_string(),
            "--cluster-tls-ca",
            &tls.key.display().to_string(),
        ]),
        &FileConfig::default(),
    )
    .expect_err("unusable files");
    assert_eq!(e.problems.len(), 2, "{e}");
    assert!(
        e.problems.iter().all(|p| p.starts_with("cluster TLS: ")),
        "{e}"
    );
    assert!(e.problems[0].contains("missing.pem"), "{e}");
}

#[test]
fn cluster_handover_window_reaches_over_an_election() {
    let single = Config::from_parts(&args(&[]), &FileConfig::default()).expect("valid");
    assert_eq!(single.ingest.handover.window, Duration::from_secs(15));
    let clustered = Config::from_parts(&cluster_args(&[]), &FileConfig::default()).expect("valid");
    assert_eq!(
        clustered.ingest.handover.window,
        Duration::from_secs(15) + 2 * crate::cluster::node::DEFAULT_ELECTION_TIMEOUT_MAX
    );
    let set = Config::from_parts(
        &cluster_args(&["--handover-window", "12s"]),
        &FileConfig::default(),
    )
    .expect("valid");
    assert_eq!(set.ingest.handover.window, Duration::from_secs(12));
}

#[test]
fn the_handover_window_covers_the_expiry_and_two_ticks() {
    let short = Config::from_parts(&args(&["--handover-window", "6s"]), &FileConfig::default());
    let err = short.expect_err("6 s < 5 s + 2 × 1 s").to_string();
    assert!(
        err.contains("handover-window (6s) must be at least"),
        "{err}"
    );
    let enough = Config::from_parts(&args(&["--handover-window", "7s"]), &FileConfig::default())
        .expect("7 s = 5 s + 2 × 1 s");
    assert_eq!(enough.ingest.handover.dir, enough.data_dir.join("handover"));
}

#[test]
fn max_in_flight_defaults_to_one_and_endpoints_override_it() {
    let c = Config::from_parts(&args(&[]), &FileConfig::default()).expect("valid");
    assert_eq!(c.shipper.endpoints[0].max_in_flight, 1);
    let file: FileConfig = toml::from_str(
        "[shipper]\nmax_in_flight = 3\n[[endpoint]]\nname = \"vm\"\nurl = \"http://vm:8428\"\nmax_in_flight = 8\n[[endpoint]]\nname = \"mimir\"\nurl = \"http://mimir:9009\"\n",
    )
    .expect("toml");
    let c =
        Config::from_parts(&args(&["--remote-write", "p=http://p:9090"]), &file).expect("valid");
    let by_name = |n: &str| {
        c.shipper
            .endpoints
            .iter()
            .find(|e| e.name == n)
            .map(|e| e.max_in_flight)
    };
    assert_eq!(by_name("p"), Some(3), "the [shipper] default");
    assert_eq!(by_name("vm"), Some(8), "the endpoint's own");
    assert_eq!(by_name("mimir"), Some(3));
    let e = Config::from_parts(&args(&["--max-in-flight", "0"]), &FileConfig::default())
        .expect_err("0 is refused");
    assert!(e.to_string().contains("max-in-flight"), "{e}");
    let file: FileConfig =
        toml::from_str("[[endpoint]]\nurl = \"http://vm:8428\"\nmax_in_flight = 65\n")
            .expect("toml");
    let e = Config::from_parts(&args(&[]), &file).expect_err("65 is refused");
    assert!(e.to_string().contains("endpoint[0].max_in_flight"), "{e}");
}

#[test]
fn ordered_in_flight_defaults_to_four_and_endpoints_override_it() {
    let c = Config::from_parts(&args(&[]), &FileConfig::default()).expect("valid");
    assert_eq!(c.shipper.endpoints[0].ordered_in_flight, 4);
    let file: FileConfig = toml::from_str(
        "[shipper]\nordered_in_flight = 2\n[[endpoint]]\nname = \"mimir\"\nurl = \"http://mimir:9009\"\nordered_in_flight = 16\n[[endpoint]]\nname = \"vm\"\nurl = \"http://vm:8428\"\n",
    )
    .expect("toml");
    let c = Config::from_parts(&args(&[]), &file).expect("valid");
    let got: Vec<usize> = c
        .shipper
        .endpoints
        .iter()
        .map(|e| e.ordered_in_flight)
        .collect();
    assert_eq!(
        got,
        [16, 2],
        "the endpoint's own, then the [shipper] default"
    );
    let c = Config::from_parts(&args(&["--ordered-in-flight", "8"]), &file).expect("valid");
    assert_eq!(c.shipper.endpoints[1].ordered_in_flight, 8, "the flag wins");
    let e = Config::from_parts(
        &args(&["--ordered-in-flight", "65", "--max-in-flight", "x"]),
        &FileConfig::default(),
    )
    .expect_err("65 is refused");
    let e = e.to_string();
    assert!(e.contains("ordered-in-flight: 65 is not in 1..=64"), "{e}");
    assert!(e.contains("max-in-flight"), "every problem at once: {e}");
}

#[test]
fn buffer_compression_comes_from_the_flag_or_the_file() {
    let file: FileConfig = toml::from_str("[buffer]\ncompression = \"never\"\n").expect("toml");
    let c = Config::from_parts(&args(&[]), &file).expect("valid");
    assert_eq!(c.wal.compression, Compression::Never);
    let c = Config::from_parts(&args(&["--buffer-compression", "always"]), &file).expect("valid");
    assert_eq!(c.wal.compression, Compression::Always, "the flag wins");
    let e = Config::from_parts(
        &args(&["--buffer-compression", "lz4"]),
        &FileConfig::default(),
    )
    .expect_err("unknown mode");
    assert!(e.to_string().contains("buffer-compression"), "{e}");
    assert!(
        e.to_string()
            .contains("unknown variant `lz4`, expected one of `auto`, `always`, `never`"),
        "{e}"
    );
}

#[test]
fn the_quarantine_cap_is_an_eighth_of_the_buffer_and_at_most_half() {
    let c = Config::from_parts(&args(&[]), &FileConfig::default()).expect("valid");
    assert_eq!(c.wal.quarantine_max_bytes, c.wal.max_bytes / 8);
    assert_eq!(
        c.wal.quarantine_max_age,
        std::time::Duration::from_secs(7 * 86_400)
    );
    let file: FileConfig = toml::from_str(
        "[buffer]\nmax_bytes = \"1GiB\"\nquarantine_max_bytes = \"100MiB\"\nquarantine_max_age = \"2d\"\n",
    )
    .expect("toml");
    let c = Config::from_parts(&args(&[]), &file).expect("valid");
    assert_eq!(c.wal.quarantine_max_bytes, 100 << 20);
    assert_eq!(
        c.wal.quarantine_max_age,
        std::time::Duration::from_secs(2 * 86_400)
    );
    let err = Config::from_parts(
        &args(&[
            "--buffer-max-bytes",
            "1GiB",
            "--quarantine-max-bytes",
            "600MiB",
        ]),
        &FileConfig::default(),
    )
    .expect_err("more than half")
    .to_string();
    assert!(err.contains("at most half of buffer-max-bytes"), "{err}");
}

/// The field names of a struct that derives `Deserialize`: serde hands them to the
/// deserializer in `deserialize_struct`, which keeps them and stops there.
fn fields_of<'de, T: serde::Deserialize<'de>>() -> Vec<&'static str> {
    struct Fields(Vec<&'static str>);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("stop")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> serde::Deserializer<'de> for &mut Fields {
        type Error = Stop;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0.extend_from_slice(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut fields = Fields(Vec::new());
    let _ = T::deserialize(&mut fields);
    fields.0
}

/// Every field of the config file is in `data/highlander.toml`, in its section, set or
/// commented out (`# key = ...`): a field added to the code without its documentation
/// fails here.
#[test]
fn the_example_file_documents_every_field() {
    use super::file::{
        BasicAuthSection, BufferSection, ClusterSection, EndpointSection, ShipperSection,
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/highlander.toml");
    let text = std::fs::read_to_string(path).expect("example file");
    // The example's sections: the lines under each `[name]` / `[[name]]` header, set or
    // commented out; "" is the top level.
    let mut sections: Vec<(String, Vec<String>)> = vec![(String::new(), Vec::new())];
    for line in text.lines() {
        let bare = line.trim_start_matches('#').trim();
        if bare.starts_with('[') && bare.ends_with(']') && !bare.contains('=') {
            sections.push((
                bare.trim_matches(|c| c == '[' || c == ']').to_owned(),
                Vec::new(),
            ));
        } else if let Some((_, lines)) = sections.last_mut() {
            lines.push(bare.to_owned());
        }
    }
    let documents = |section: &str, field: &str| {
        sections.iter().any(|(name, lines)| {
            name == section
                && lines.iter().any(|l| {
                    l.split('=').next().is_some_and(|k| k.trim() == field)
                        || (section == "endpoint"
                            && l.starts_with("basic_auth")
                            && l.contains(&format!("{field} ")))
                })
        })
    };
    let mut missing = Vec::new();
    let nested = ["cluster", "buffer", "shipper", "endpoint"];
    for field in fields_of::<FileConfig>() {
        if !nested.contains(&field) && !documents("", field) {
            missing.push(field.to_owned());
        }
    }
    for (section, fields) in [
        ("cluster", fields_of::<ClusterSection>()),
        ("buffer", fields_of::<BufferSection>()),
        ("shipper", fields_of::<ShipperSection>()),
        ("endpoint", fields_of::<EndpointSection>()),
        ("endpoint", fields_of::<BasicAuthSection>()),
    ] {
        assert!(!fields.is_empty(), "no fields found for [{section}]");
        for field in fields {
            if !documents(section, field) {
                missing.push(format!("[{section}] {field}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not in data/highlander.toml: {missing:?}"
    );
}

/// The values `data/highlander.toml` shows as defaults are the built-in ones: the file
/// without its "# example" lines and its example `[[endpoint]]` configures exactly what
/// no file does.
#[test]
fn the_example_file_shows_the_built_in_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/highlander.toml");
    let text = std::fs::read_to_string(path).expect("example file");
    let defaults: String = text
        .split("[[endpoint]]")
        .next()
        .expect("text before the example endpoint")
        .lines()
        .filter(|l| !l.trim_end().ends_with("# example"))
        .map(|l| format!("{l}\n"))
        .collect();
    let file: FileConfig = toml::from_str(&defaults).expect("the defaults parse");
    let shown = Config::from_parts(&args(&[]), &file).expect("the defaults are valid");
    let built_in = Config::from_parts(&args(&[]), &FileConfig::default()).expect("valid");
    assert_eq!(format!("{shown:?}"), format!("{built_in:?}"));

    // The example endpoint's lines that are not examples are an endpoint's defaults.
    let endpoint: String = text
        .split("[[endpoint]]")
        .nth(1)
        .expect("the example endpoint")
        .lines()
        .filter(|l| !l.trim_end().ends_with("# example"))
        .map(|l| format!("{l}\n"))
        .collect();
    let url = "[[endpoint]]\nurl = \"http://vm:8428/api/v1/write\"\n";
    let shown: FileConfig = toml::from_str(&format!("{url}{endpoint}")).expect("parses");
    let bare: FileConfig = toml::from_str(url).expect("parses");
    let shown = Config::from_parts(&args(&[]), &shown).expect("valid");
    let bare = Config::from_parts(&args(&[]), &bare).expect("valid");
    assert_eq!(
        format!("{:?}", shown.shipper.endpoints),
        format!("{:?}", bare.shipper.endpoints)
    );
}
