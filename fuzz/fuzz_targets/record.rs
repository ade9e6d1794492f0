//! A stored record's bytes, as a damaged disk may hand them back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = highlander::wal::Record::decode(data);
    let _ = highlander::wal::Record::decode_meta(data);
});
