//! A fault-injecting TCP proxy for the cluster transport, in the test process: every node's
//! `--peers` address is a proxy port that forwards to that node's real cluster listener, so
//! all raft traffic (and forwarded proposals, follower reports) goes through here.
//!
//! Every cluster request names its sender (`x-highlander-node: <id>`, added by the
//! transport); the proxy reads the head of the first request of each connection to learn
//! who talks to whom (a connection carries requests of one sender only: one HTTP client per
//! node), then pipes bytes both ways.
//!
//! [`Partition::isolate`] cuts a node off in BOTH directions: every open connection from or
//! to it is cut, new ones are cut as soon as their sender is known. How they are cut is
//! [`Cut`]: closed at once (the peer sees a reset connection) or black-holed (held open,
//! nothing delivered either way, like packets dropped on the wire: the sender waits for its
//! timeout). [`Partition::heal`] lets traffic through again (black-holed connections are
//! closed then, their requests are lost as they would be on a real network).
//!
//! A connection whose first request names no sender cannot be attributed; it is closed and
//! counted ([`Partition::unattributed`]): a test asserts there were none, otherwise the
//! partition would not be what it claims.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The header the cluster transport sets on every request (see `src/cluster/rpc.rs`).
pub const NODE_HEADER: &str = "x-highlander-node";
/// Longest request head read to find the sender.
const MAX_HEAD: usize = 64 << 10;
/// How long a connection may take to send its first request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// How the traffic of an isolated node is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Connections are closed at once (the sender sees a reset/closed connection).
    Close,
    /// Connections stay open but nothing gets through either way (the sender times out).
    Blackhole,
}

/// What went through the proxy (for diagnostics and assertions).
#[derive(Debug, Clone, Default)]
pub struct Traffic {
    /// Connections let through, by (from, to).
    pub forwarded: BTreeMap<(u64, u64), u64>,
    /// Connections cut (closed or black-holed, new or open), by (from, to).
    pub cut: BTreeMap<(u64, u64), u64>,
    /// Connections whose sender was unknown.
    pub unattributed: u64,
}

struct Open {
    from: u64,
    to: u64,
    stop: CancellationToken,
}

struct State {
    isolated: BTreeSet<u64>,
    cut: Cut,
    next_id: u64,
    open: HashMap<u64, Open>,
    /// Cancelled (and replaced) at every heal: releases black-holed connections.
    healed: CancellationToken,
    traffic: Traffic,
}

struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The proxies in front of every node's cluster listener. Dropping it stops them all and
/// closes every connection.
pub struct Partition {
    shared: Arc<Shared>,
    /// Proxy address of each node.
    addrs: BTreeMap<u64, SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
    shutdown: CancellationToken,
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.shutdown.cancel();
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Partition {
    /// Proxies for `nodes` (id → (proxy port to listen on, the node's real cluster
    /// listener)), cutting isolated nodes off as `cut` says. Listening when it returns.
    pub async fn start(nodes: &BTreeMap<u64, (u16, SocketAddr)>, cut: Cut) -> Partition {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                isolated: BTreeSet::new(),
                cut,
                next_id: 0,
                open: HashMap::new(),
                healed: CancellationToken::new(),
                traffic: Traffic::default(),
            }),
        });
        let shutdown = CancellationToken::new();
        let mut addrs = BTreeMap::new();
        let mut tasks = Vec::new();
        for (&id, &(port, target)) in nodes {
            let listener = TcpListener::bind(("127.0.0.1", port))
                .await
                .unwrap_or_else(|e| panic!("proxy of node {id}: bind 127.0.0.1:{port}: {e}"));
            addrs.insert(id, listener.local_addr().expect("proxy addr"));
            tasks.push(tokio::spawn(accept_loop(
                shared.clone(),
                listener,
                id,
                target,
                shutdown.clone(),
            )));
        }
        Partition {
            shared,
            addrs,
            tasks,
            shutdown,
        }
    }

    /// The proxy address of node `id` (what `--peers` names).
    pub fn addr(&self, id: u64) -> SocketAddr {
        self.addrs[&id]
    }

    /// Cuts node `id` off from every other node, both ways, until [`Partition::heal`].
    pub fn isolate(&self, id: u64) {
        let mut s = self.shared.lock();
        s.isolated.insert(id);
        let mut cut = Vec::new();
        for o in s.open.values() {
            if o.from == id || o.to == id {
                o.stop.cancel();
                cut.push((o.from, o.to));
            }
        }
        for k in cut {
            *s.traffic.cut.entry(k).or_default() += 1;
        }
    }

    /// Lets every node talk to every other again.
    pub fn heal(&self) {
        let mut s = self.shared.lock();
        s.isolated.clear();
        s.healed.cancel();
        s.healed = CancellationToken::new();
    }

    /// What went through so far.
    pub fn traffic(&self) -> Traffic {
        self.shared.lock().traffic.clone()
    }

    /// Connections closed because they named no sender.
    pub fn unattributed(&self) -> u64 {
        self.shared.lock().traffic.unattributed
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    to: u64,
    target: SocketAddr,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((client, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = client.set_nodelay(true);
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = connection(shared, client, to, target) => {}
            }
        });
    }
}

/// The sender named in a request head, if any.
fn sender(head: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(head).ok()?;
    text.split("\r\n").skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case(NODE_HEADER)
            .then(|| value.trim().parse().ok())?
    })
}

/// Reads until the end of the first request head; returns every byte read.
async fn read_head(client: &mut TcpStream) -> Option<(Vec<u8>, usize)> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some((buf, end));
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        let n = client.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Holds a black-holed connection: reads and discards until the client gives up or the
/// partition heals.
async fn hold(mut client: TcpStream, healed: CancellationToken) {
    let mut sink = [0u8; 4096];
    loop {
        tokio::select! {
            _ = healed.cancelled() => return,
            r = client.read(&mut sink) => match r {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
        }
    }
}

async fn connection(shared: Arc<Shared>, mut client: TcpStream, to: u64, target: SocketAddr) {
    let Ok(Some((head, end))) = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut client)).await
    else {
        return;
    };
    let Some(from) = sender(&head[..end]) else {
        shared.lock().traffic.unattributed += 1;
        return;
    };
    // Decided under the lock, so an isolate() racing with this connection either sees it
    // registered (and cuts it) or happened before (and this connection is cut here).
    let decision = {
        let mut s = shared.lock();
        if s.isolated.contains(&from) || s.isolated.contains(&to) {
            *s.traffic.cut.entry((from, to)).or_default() += 1;
            Err((s.cut, s.healed.clone()))
        } else {
            *s.traffic.forwarded.entry((from, to)).or_default() += 1;
            let id = s.next_id;
            s.next_id += 1;
            let stop = CancellationToken::new();
            s.open.insert(
                id,
                Open {
                    from,
                    to,
                    stop: stop.clone(),
                },
            );
            Ok((id, stop))
        }
    };
    let (conn_id, stop) = match decision {
        Ok(d) => d,
        Err((cut, healed)) => {
            if cut == Cut::Blackhole {
                hold(client, healed).await;
            }
            return;
        }
    };
    let piped = async {
        let mut upstream = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(target))
            .await
            .ok()?
            .ok()?;
        let _ = upstream.set_nodelay(true);
        upstream.write_all(&head).await.ok()?;
        tokio::io::copy_bidirectional(&mut client, &mut upstream)
            .await
            .ok()
    };
    let stopped = tokio::select! {
        _ = stop.cancelled() => true,
        _ = piped => false,
    };
    let held = {
        let mut s = shared.lock();
        s.open.remove(&conn_id);
        let still_cut = s.isolated.contains(&from) || s.isolated.contains(&to);
        (stopped && still_cut && s.cut == Cut::Blackhole).then(|| s.healed.clone())
    };
    if let Some(healed) = held {
        // The upstream side is gone (dropped with `piped`); the client is left hanging.
        hold(client, healed).await;
    }
}

#[cfg(test)]
mod tests {
    use super::sender;

    #[test]
    fn sender_is_read_from_the_head() {
        let head = b"POST /raft/vote HTTP/1.1\r\nhost: x\r\nX-Highlander-Node: 3\r\n";
        assert_eq!(sender(head), Some(3));
        assert_eq!(sender(b"POST / HTTP/1.1\r\nhost: x"), None);
    }
}
