//! TLS and authentication towards a real storage: VictoriaMetrics (Debian sid's 1.145)
//! started by the test with `-tls`, a certificate signed by a CA the test makes, and
//! `-httpAuth.username/password`; a bearer token towards the in-test storage.
//!
//! - the right CA and password: the samples arrive in VictoriaMetrics;
//! - a wrong password: the endpoint is `unauthorized`, nothing is quarantined, and the
//!   writes arrive once a restart gives it the right password;
//! - a CA that did not sign the certificate: the endpoint retries with a TLS error, nothing
//!   is quarantined;
//! - the bearer token reaches the storage as `Authorization: Bearer …`;
//! - no password or token shows in highlander's log.

mod common;

use std::path::Path;
use std::time::Duration;

use common::e2e::*;
use common::*;

const PASSWORD: &str = "e2e-storage-password";
const TOKEN: &str = "e2e-storage-bearer-token";
const T0: i64 = 1_700_000_000_000;

/// A CA, and a certificate for 127.0.0.1 it signed: `ca.pem`, `vm.pem`, `vm-key.pem` in
/// `dir`; and a second CA (`other-ca.pem`) that signed nothing.
fn certificates(dir: &Path) {
    let ca = |name: &str| {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        (params.self_signed(&key).expect("self-signed"), key)
    };
    let (ca_cert, ca_key) = ca("e2e storage CA");
    let (other, _) = ca("another CA");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("params")
        .signed_by(&key, &ca_cert, &ca_key)
        .expect("signed");
    let write = |name: &str, pem: String| std::fs::write(dir.join(name), pem).expect("pem");
    write("ca.pem", ca_cert.pem());
    write("other-ca.pem", other.pem());
    write("vm.pem", cert.pem());
    write("vm-key.pem", key.serialize_pem());
}

/// A client that trusts the test CA.
fn tls_client(dir: &Path) -> reqwest::Client {
    highlander::shipper::client::install_crypto_provider();
    let pem = std::fs::read(dir.join("ca.pem")).expect("ca.pem");
    reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA"))
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

/// The series named `name` that VictoriaMetrics holds, and their sample count.
async fn exported(client: &reqwest::Client, vm: &str, name: &str) -> usize {
    let url = with_params(
        &format!("{vm}/api/v1/export"),
        &[("match[]", format!("{{__name__=\"{name}\"}}"))],
    );
    let Ok(resp) = client
        .get(url)
        .basic_auth("relay", Some(PASSWORD))
        .send()
        .await
    else {
        return 0;
    };
    let text = resp.text().await.unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["values"].as_array().map_or(0, Vec::len))
        .sum()
}

fn config(dir: &Path, vm_write: &str, sink: &str, password: &str) -> String {
    let ca = dir.join("ca.pem");
    let other = dir.join("other-ca.pem");
    format!(
        r#"[[endpoint]]
name = "vm"
url = "{vm_write}"
tls_ca_file = "{ca}"
basic_auth = {{ username = "relay", password = "{password}" }}

[[endpoint]]
name = "wrong-ca"
url = "{vm_write}"
tls_ca_file = "{other}"
basic_auth = {{ username = "relay", password = "{PASSWORD}" }}

[[endpoint]]
name = "bearer"
url = "{sink}"
bearer_token = "{TOKEN}"
"#,
        ca = ca.display(),
        other = other.display(),
    )
}

async fn endpoint(node: &Node, name: &str) -> serde_json::Value {
    let q = node.admin_json("/api/v1/queue").await;
    q["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .find(|e| e["name"] == name)
        .cloned()
        .expect("endpoint listed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_basic_auth_to_victoriametrics_and_a_bearer_token() {
    Servers::Sid.require();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    certificates(dir);
    let port = free_port();
    let vm = format!("https://127.0.0.1:{port}");
    let vm_proc = Proc::spawn(
        "victoria-metrics",
        &Servers::Sid.victoria_metrics(),
        vec![
            format!("-httpListenAddr=127.0.0.1:{port}"),
            format!("-storageDataPath={}", dir.join("vm-data").display()),
            "-retentionPeriod=100y".into(),
            "-search.latencyOffset=0s".into(),
            "-loggerLevel=WARN".into(),
            "-tls".into(),
            format!("-tlsCertFile={}", dir.join("vm.pem").display()),
            format!("-tlsKeyFile={}", dir.join("vm-key.pem").display()),
            "-httpAuth.username=relay".into(),
            format!("-httpAuth.password={PASSWORD}"),
        ],
        dir.join("vm.log"),
    );
    let client = tls_client(dir);
    wait_until(
        "VictoriaMetrics over TLS",
        Duration::from_secs(30),
        || async {
            let r = client.get(format!("{vm}/health")).send().await.ok()?;
            r.status().is_success().then_some(())
        },
    )
    .await;
    eprintln!("VictoriaMetrics over TLS: {}", vm_proc.log_tail(3));
    // Without the password VictoriaMetrics refuses: the auth is on.
    let r = client
        .get(format!("{vm}/api/v1/export?match[]=up"))
        .send()
        .await
        .expect("reachable");
    assert_eq!(
        r.status().as_u16(),
        401,
        "VictoriaMetrics' basic auth is on"
    );

    let sink = Sink::start().await;
    let path = dir.join("highlander.toml");
    let vm_write = format!("{vm}/api/v1/write");
    // First a wrong password for "vm".
    std::fs::write(
        &path,
        config(dir, &vm_write, &sink.url(), "not-the-password"),
    )
    .expect("toml");
    let mut node = Node::start(&["--config", path.to_str().expect("UTF-8")]).await;
    let c = http();
    let url = node.write_url("highlander_source=a");
    for i in 0..5 {
        assert_eq!(
            post(&c, &url, &request("tls_e2e", 10, 1, T0 + i * 1000))
                .await
                .0,
            204
        );
    }
    // The bearer token reaches the in-test storage.
    sink.wait_samples(50, Duration::from_secs(20)).await;
    let authorization = sink.with(|r| r.headers[0].get("authorization").cloned());
    assert_eq!(authorization.as_deref(), Some(&*format!("Bearer {TOKEN}")));
    // The wrong password: unauthorized, retried, nothing quarantined.
    wait_until("vm unauthorized", Duration::from_secs(20), || async {
        (endpoint(&node, "vm").await["state"] == "unauthorized").then_some(())
    })
    .await;
    // The wrong CA: a TLS error, retried, nothing quarantined.
    let wrong_ca = wait_until("the wrong CA's error", Duration::from_secs(20), || async {
        let e = endpoint(&node, "wrong-ca").await;
        let err = e["last_error"].as_str().unwrap_or_default().to_owned();
        (!err.is_empty()).then_some(err)
    })
    .await;
    assert!(
        wrong_ca.to_lowercase().contains("certificate") || wrong_ca.contains("UnknownIssuer"),
        "a TLS error: {wrong_ca}"
    );
    let q = node.admin_json("/api/v1/queue").await;
    assert_eq!(q["quarantined"], 0, "{q}");
    assert_eq!(
        exported(&client, &vm, "tls_e2e").await,
        0,
        "nothing got in yet"
    );

    // The right password, after a restart: every write arrives over TLS.
    std::fs::write(&path, config(dir, &vm_write, &sink.url(), PASSWORD)).expect("toml");
    node.restart().await;
    let got = wait_until(
        "the samples in VictoriaMetrics",
        Duration::from_secs(30),
        || async {
            let n = exported(&client, &vm, "tls_e2e").await;
            (n >= 50).then_some(n)
        },
    )
    .await;
    assert_eq!(got, 50, "every sample once");
    let log = node.log();
    for secret in [PASSWORD, TOKEN, "not-the-password"] {
        assert!(!log.contains(secret), "a secret in the log: {secret}");
    }
}
