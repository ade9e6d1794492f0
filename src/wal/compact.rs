//! When new records are stored compact (zstd, [`super::record::Record::encode_compact`]).
//!
//! A write that goes out within milliseconds is stored as the sender's snappy block, so
//! the relay spends no CPU on it. A write that is going to wait is stored with that block
//! compressed again by zstd. A write waits when a storage is down: its shipper retries, or
//! an operator paused it. The compact form is smaller, so the same disk holds a longer
//! outage. It costs some CPU when stored and when shipped; a read expands it to the same
//! bytes. `bench/HISTORY.md` has the sizes and costs.
//!
//! The shipper reports each endpoint's state ([`Wal::set_storage_down`]). Records already
//! stored keep their form.
//!
//! Invariant: `compacting` is true exactly while the mode is `always`, or while the mode is
//! `auto` and at least one endpoint is down.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use super::{Compression, Wal};
use crate::metrics::METRICS;

/// The endpoints that are down, and whether new records are stored compact.
pub(super) struct Compact {
    mode: Compression,
    down: Mutex<BTreeSet<String>>,
    compacting: AtomicBool,
}

impl Compact {
    pub(super) fn new(mode: Compression) -> Compact {
        let always = mode == Compression::Always;
        METRICS.wal.compacting.set(i64::from(always));
        Compact {
            mode,
            down: Mutex::new(BTreeSet::new()),
            compacting: AtomicBool::new(always),
        }
    }
}

impl Wal {
    /// Whether a record inserted now is stored compact.
    pub fn compacting(&self) -> bool {
        self.inner.compact.compacting.load(Ordering::Relaxed)
    }

    /// The shipper reports that `endpoint` is down (retrying, failing or paused) or up
    /// again. In `auto` mode, new records are stored compact while any endpoint is down.
    pub fn set_storage_down(&self, endpoint: &str, down: bool) {
        let c = &self.inner.compact;
        if c.mode != Compression::Auto {
            return;
        }
        let mut set = c.down.lock();
        let changed = if down {
            set.insert(endpoint.to_owned())
        } else {
            set.remove(endpoint)
        };
        let now = !set.is_empty();
        if !changed || c.compacting.swap(now, Ordering::Relaxed) == now {
            return;
        }
        METRICS.wal.compacting.set(i64::from(now));
        if now {
            tracing::info!(endpoint, "wal: a storage is down; new writes are stored compressed (zstd) until every storage takes writes again");
        } else {
            tracing::info!(
                endpoint,
                "wal: every storage takes writes again; new writes are stored as received"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::wal::record::tests::snappy_record;
    use crate::wal::{Compression, Durability, ReadItem, StartAt, Wal, WalConfig};

    fn open(dir: &std::path::Path, compression: Compression) -> Wal {
        Wal::open(WalConfig {
            durability: Durability::None,
            compression,
            ..WalConfig::for_tests(dir)
        })
        .expect("open wal")
    }

    #[test]
    fn auto_compacts_while_any_storage_is_down() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = open(dir.path(), Compression::Auto);
        assert!(!wal.compacting());
        wal.set_storage_down("a", true);
        wal.set_storage_down("b", true);
        assert!(wal.compacting());
        wal.set_storage_down("a", false);
        assert!(wal.compacting(), "b is still down");
        wal.set_storage_down("a", false);
        assert!(wal.compacting(), "a second 'up' for a changes nothing");
        wal.set_storage_down("b", false);
        assert!(!wal.compacting());
    }

    #[test]
    fn always_and_never_ignore_the_storages() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = open(dir.path(), Compression::Always);
        wal.set_storage_down("a", false);
        assert!(wal.compacting());
        drop(wal);
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = open(dir.path(), Compression::Never);
        wal.set_storage_down("a", true);
        assert!(!wal.compacting());
    }

    #[tokio::test]
    async fn compact_records_take_less_room_and_read_back_as_shipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = open(dir.path(), Compression::Auto);
        wal.register_endpoints(&["vm".to_owned()], StartAt::Oldest)
            .expect("register");
        let r = snappy_record();
        wal.append(&r).await.expect("as received");
        let plain = wal.stats().bytes;
        wal.set_storage_down("vm", true);
        wal.append(&r).await.expect("compact");
        let compact = wal.stats().bytes - plain;
        assert!(
            compact * 2 < plain,
            "{compact} bytes compact, {plain} as received"
        );
        let read = wal.read_blocking(0, 10, 1 << 20).expect("read");
        assert_eq!(read.len(), 2);
        for item in read {
            let ReadItem::Record(_, back) = item else {
                panic!("damaged: {item:?}");
            };
            assert_eq!(back, r, "the same snappy block as received");
        }
    }
}
