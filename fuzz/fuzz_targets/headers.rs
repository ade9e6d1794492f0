//! What a sender controls besides the body: the Content-Type and the query string.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = highlander::ingest::protocol::parse_content_type(text);
    let _ = highlander::ingest::identity::Params::parse(text);
});
