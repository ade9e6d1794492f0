//! Reading a highlander node's log in tests: the lines that matter for cluster, election and
//! handover checks and failure reports, without openraft's retry noise.

/// The lines of a highlander log above DEBUG level.
pub fn info_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| !l.contains(" DEBUG ") && !l.contains(" TRACE "))
        .map(str::to_owned)
        .collect()
}

/// The lines of a highlander log about the cluster, the election and handovers, and its
/// warnings; without openraft's once-a-second complaints about an unreachable (killed)
/// peer.
pub fn key_lines(log: &str) -> Vec<String> {
    info_lines(log)
        .into_iter()
        .filter(|l| {
            let raft_retry = l.contains("openraft::")
                && (l.contains("Unreachable") || l.contains("backoff_drain_events"));
            !raft_retry
                && (l.contains("cluster")
                    || l.contains("source : ")
                    || l.contains("handover")
                    || l.contains(" WARN ")
                    || l.contains(" ERROR "))
        })
        .collect()
}

/// The last `n` lines, joined.
pub fn tail(lines: &[String], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join("\n")
}
