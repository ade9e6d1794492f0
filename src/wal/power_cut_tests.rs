//! Power cuts of the buffer, on the model of `segments/power_cut.rs`: what was synced
//! survives, and of the rest any seeded half of the unsynced pages. Writers append
//! concurrently (the group commit), more records are inserted without waiting for their
//! flush (never acknowledged), the cursor moves so that shipped segments are deleted or
//! reused as the spare, and the directory is cut 40 times. After each cut, a WAL opened
//! on what the cut left holds every acknowledged record above the floor, byte for byte.
//!
//! This test fails when `Segments::sync` leaves out the `fdatasync` of a segment or the
//! `fsync` of the directory (checked by hand once: see the commit that added it).
//! `HIGHLANDER_POWER_CUT_SEED=<n>` replays a run.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use super::segments::power_cut;
use super::{Compression, ReadItem, Record, StartAt, Wal, WalConfig};
use crate::clock::Clock;

const CUTS: usize = 40;

/// Record `n`: its source names it, its payload repeats it.
fn record(n: u64, len: usize) -> Record {
    Record {
        source: format!("w{n}"),
        payload: Bytes::from(vec![(n % 251) as u8; len]),
        ..super::record::tests::sample()
    }
}

fn is_record(item: Option<&ReadItem>, n: u64, len: usize) -> bool {
    matches!(item, Some(ReadItem::Record(_, r)) if *r == record(n, len))
}

/// Copies the WAL's directory but its segments (sled's files, as they are after a flush).
fn copy_state(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("image dir");
    for entry in std::fs::read_dir(from).expect("wal dir") {
        let entry = entry.expect("entry");
        let path = entry.path();
        if entry.file_name() == "segments" {
            continue;
        }
        if path.is_dir() {
            copy_state(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).expect("copy");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_write_survives_a_power_cut() {
    let seed = std::env::var("HIGHLANDER_POWER_CUT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| crate::clock::SystemClock.now_ms());
    eprintln!("power cut seed {seed} (HIGHLANDER_POWER_CUT_SEED={seed} replays it)");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = WalConfig {
        compression: Compression::Never,
        ..WalConfig::for_tests(&dir.path().join("wal"))
    };
    let wal = Wal::open(config.clone()).expect("open");
    let shutdown = CancellationToken::new();
    let tasks = wal.start(&shutdown);
    // A failed assertion must not leave the flusher running: the runtime would wait for it.
    let _stop_on_panic = shutdown.clone().drop_guard();
    wal.register_endpoints(&["vm".to_owned()], StartAt::Oldest)
        .expect("endpoint");
    let segments = config.dir.join("segments");
    power_cut::arm(&segments);

    // Sequence → (record number, payload length), acknowledged or not.
    let mut acked: BTreeMap<u64, (u64, usize)> = BTreeMap::new();
    let mut unacked: BTreeMap<u64, (u64, usize)> = BTreeMap::new();
    let mut n = 0u64;
    let (mut pages, mut kept, mut survived, mut checked, mut floors, mut spares) =
        (0, 0, 0, 0, 0u64, 0);
    for cut in 0..CUTS {
        // Writers at once, so that appends share flushes.
        let mut writers = Vec::new();
        for _ in 0..rng.random_range(1..=4) {
            let batch: Vec<(u64, usize)> = (0..rng.random_range(1..=4))
                .map(|_| {
                    n += 1;
                    (n, rng.random_range(40..400))
                })
                .collect();
            let wal = wal.clone();
            writers.push(tokio::spawn(async move {
                let mut done = Vec::new();
                for (n, len) in batch {
                    let seq = wal.append(&record(n, len)).await.expect("append");
                    done.push((seq, (n, len)));
                }
                done
            }));
        }
        for w in writers {
            acked.extend(w.await.expect("writer"));
        }
        // Inserted, never acknowledged: a flush may or may not have covered them.
        for _ in 0..rng.random_range(0..=3) {
            n += 1;
            let len = rng.random_range(40..400);
            let seq = wal
                .insert_all(std::slice::from_ref(&record(n, len)))
                .expect("insert");
            unacked.insert(seq, (n, len));
        }
        // The storage took a part: shipped segments are deleted or kept for reuse.
        if rng.random_bool(0.5) {
            let from = wal.cursor("vm").expect("cursor");
            // At most half of what is left, so that acknowledged records stay buffered.
            let to = from + rng.random_range(0..=(wal.next_seq() - from) / 2);
            wal.advance_cursor("vm", from, to).expect("advance");
            wal.collect_garbage().expect("gc");
        }

        spares += usize::from(segments.join("spare").exists());
        let floor = wal.first_seq();
        floors = floors.max(floor);
        wal.flush_sled().expect("sled flush");
        let image = tempfile::tempdir().expect("image");
        let image_wal = image.path().join("wal");
        copy_state(&config.dir, &image_wal);
        std::fs::create_dir(image_wal.join("segments")).expect("segments");
        let report = power_cut::cut(&segments, &image_wal.join("segments"), || {
            rng.random_bool(0.5)
        });
        pages += report.unsynced_pages;
        kept += report.kept_pages;

        let after = Wal::open(WalConfig {
            dir: image_wal,
            ..config.clone()
        })
        .expect("opens after the cut");
        let items: BTreeMap<u64, ReadItem> = after
            .read_blocking(0, usize::MAX, usize::MAX)
            .expect("read")
            .into_iter()
            .map(|i| (i.seq(), i))
            .collect();
        for (&seq, &(n, len)) in acked.range(floor..) {
            assert!(
                is_record(items.get(&seq), n, len),
                "cut {cut} (seed {seed}): acknowledged record {seq} (w{n}) is {:?} after the power cut; {report:?}",
                items.get(&seq).map(|i| match i {
                    ReadItem::Record(_, r) => format!("{} {} bytes", r.source, r.payload.len()),
                    ReadItem::Corrupt(_, e) => format!("corrupt: {e}"),
                })
            );
            checked += 1;
        }
        survived += unacked
            .range(floor..)
            .filter(|(seq, &(n, len))| is_record(items.get(seq), n, len))
            .count();
    }
    power_cut::disarm(&segments);
    shutdown.cancel();
    assert!(
        tasks
            .stopped(tokio::time::Instant::now() + Duration::from_secs(30))
            .await
    );
    eprintln!(
        "power cuts: {CUTS} cuts, {} records acknowledged ({checked} checks above the floor, all intact), \
         {} inserted unacknowledged (found intact in {survived} checks after a cut), {pages} unsynced pages of which {kept} written back, \
         floor reached {floors}, a shipped segment kept for reuse at {spares} cuts",
        acked.len(),
        unacked.len(),
    );
}
