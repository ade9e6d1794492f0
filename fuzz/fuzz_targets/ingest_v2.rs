//! A Remote-Write 2.0 body: snappy, the 2.0 scan and its conversion to 1.0.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::both_ways(data, highlander::ingest::protocol::Version::V2);
});
