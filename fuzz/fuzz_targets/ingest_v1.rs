//! A Remote-Write 1.0 body: snappy, the wire scan, the replica label's stripping.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::both_ways(data, highlander::ingest::protocol::Version::V1);
});
