//! `highlander-bench verify`: how many acknowledged samples never reached the sink.
//!
//! The load's acknowledgement log names the pool entry and timestamp of every request
//! answered 2xx. Rebuilding the same workload gives the series of each pool entry. So we
//! know the exact (series, timestamp) pairs that the relay promised to deliver. The sink's
//! `POST /check` counts those it never received.

use std::path::Path;

use serde_json::json;

use crate::load::{read_ack_log, Ack};
use crate::workload;

/// Records per `/check` request (16 bytes each).
const CHUNK: usize = 1 << 20;

/// Checks the acknowledgement log against the sink at `sink_url` (its base URL).
pub async fn run(ack_log: &Path, sink_url: &url::Url) -> Result<serde_json::Value, String> {
    highlander::shipper::client::install_crypto_provider();
    let (shape, acks) = read_ack_log(ack_log)?;
    let pool =
        tokio::task::spawn_blocking(move || workload::build(shape, false, workload::Protocol::V1))
            .await
            .map_err(|e| e.to_string())??;
    let check = sink_url
        .join("/check")
        .map_err(|e| format!("bad sink URL: {e}"))?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;

    let mut acked_samples = 0u64;
    let mut missing = 0u64;
    let mut body = Vec::with_capacity(CHUNK * 16);
    let mut records = 0usize;
    let mut pending = acks.iter().peekable();
    while pending.peek().is_some() || records > 0 {
        if let Some(&Ack { index, ts, .. }) = pending.next() {
            let template = pool.templates.get(index as usize).ok_or_else(|| {
                format!(
                    "ack log names pool entry {index}, the pool has {}",
                    pool.templates.len()
                )
            })?;
            for hash in &template.series_hashes {
                body.extend_from_slice(&hash.to_le_bytes());
                body.extend_from_slice(&ts.to_le_bytes());
            }
            records += template.series_hashes.len();
            acked_samples += template.samples;
            if records < CHUNK && pending.peek().is_some() {
                continue;
            }
        }
        let answer = client
            .post(check.clone())
            .body(std::mem::take(&mut body))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("{check}: {e}"))?
            .bytes()
            .await
            .map_err(|e| format!("{check}: {e}"))?;
        let answer: serde_json::Value =
            serde_json::from_slice(&answer).map_err(|e| format!("{check}: {e}"))?;
        missing += answer["missing"].as_u64().unwrap_or(0);
        records = 0;
    }
    Ok(json!({
        "acked_requests": acks.len(),
        "acked_samples": acked_samples,
        "missing_samples": missing,
        "lost_fraction": if acked_samples == 0 { 0.0 } else { missing as f64 / acked_samples as f64 },
    }))
}
