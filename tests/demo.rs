//! `scripts/demo`, run as a newcomer would (with this build of highlander): replica a is
//! promoted, its kill -9 hands over to b, the cluster leader's kill -9 elects another
//! node, and the script stops everything it started.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_demo_shows_a_failover_and_a_leader_change_and_cleans_up() {
    let root = env!("CARGO_MANIFEST_DIR");
    // Below Linux's ephemeral range (32768 and up), where the other tests' free ports and
    // every outgoing connection take theirs: 47000 collided once.
    let mut child = Command::new(format!("{root}/scripts/demo"))
        .args(["--duration", "60", "--port-base", "27000"])
        .env("HIGHLANDER_BIN", env!("CARGO_BIN_EXE_highlander"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("run scripts/demo");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(240) {
            // SAFETY: kill(2) on the demo's own process group.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut out = String::new();
    let mut err = String::new();
    let _ = child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out);
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err);
    let all = format!("{out}\n--- stderr ---\n{err}");
    assert!(
        status.is_some_and(|s| s.success()),
        "the demo failed or hung: {status:?}\n{all}"
    );
    for line in [
        "replica a (weight 10) is promoted",
        "failover: replica b is promoted",
        "FROM  TO  REASON",
        "leads now; replica b is still forwarded: b",
        "stopped everything",
    ] {
        assert!(
            all.contains(line),
            "{line:?} missing from the demo's output:\n{all}"
        );
    }
    assert!(
        all.lines()
            .any(|l| l.contains(" a ") && l.contains(" b ") && l.contains("expiry (")),
        "the switch from a to b by expiry in groups --history:\n{all}"
    );
    eprintln!("demo took {:?}:\n{out}", started.elapsed());
}
