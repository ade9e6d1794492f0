//! What a worker does with an answer: a delivered batch is counted; a refused joined
//! batch goes again record by record, each with its own verdict; a record the storage
//! finds too large goes in halves; a rejected one is quarantined; an operator's replay
//! sends a quarantined one again. A 2.0 request's answer also tells an `auto` endpoint
//! whether the storage reads 2.0.

use bytes::Bytes;

use super::protocol::{payload_in, to_v1};
use super::send::{Final, Stop};
use super::split::halve;
use super::worker::Worker;
use crate::metrics::METRICS;
use crate::wal::Record;
use crate::wire::Version;

/// A record that the conversion to 1.0 refused: the ingest validated it, so this is a bug,
/// and the record is quarantined with this answer.
fn unconvertible(e: &crate::wire::WireError) -> (u16, String) {
    (
        400,
        format!("highlander could not convert the 2.0 record to 1.0: {e}"),
    )
}

impl Worker {
    /// Learns from the answer to a 2.0 request. Returns `true` when an `auto` endpoint
    /// fell back to 1.0 because of it (stored, logged, shown in the status).
    pub(super) fn learn_protocol(&mut self, outcome: &Final) -> bool {
        if !self.speaker.answered(outcome) {
            return false;
        }
        let reason = match outcome {
            Final::NotV2 { reason, .. } => reason.as_str(),
            Final::Reject { answer, .. } => answer.as_str(),
            Final::Delivered | Final::TooLarge => "",
        };
        tracing::warn!(endpoint = %self.name(), answer = %reason, "shipper: the storage does not read Remote-Write 2.0; this endpoint (protocol auto) takes 1.0 from now on, and the refused records go again as 1.0");
        if let Err(e) = self.wal.set_endpoint_protocol(self.name(), Version::V1) {
            tracing::error!(endpoint = %self.name(), error = %e, "shipper: could not store the fallback to 1.0; the next start probes 2.0 again");
        }
        self.update(|s| s.protocol_in_use = Version::V1.as_str().to_owned());
        true
    }

    /// Settles the batch `first, first + 1, ...` whose request ended with `outcome`
    /// (`None`: the batch was not sent as one request).
    /// - A delivered batch is counted.
    /// - Otherwise (rejected, too large, not joined), its records are sent one by one.
    ///   Each gets its own verdict and quarantine entry.
    ///
    /// Then it moves the cursor from `cursor` past what is done and returns where the
    /// cursor stands, or `None` when the cursor could not be moved.
    pub(super) async fn settle(
        &mut self,
        first: u64,
        batch: &[Record],
        version: Version,
        cursor: u64,
        outcome: Option<Final>,
    ) -> Result<Option<u64>, Stop> {
        if let (Version::V2, Some(answer)) = (version, &outcome) {
            if self.learn_protocol(answer) {
                // The pass starts again at the cursor, which stayed before this batch:
                // its records and every later one are read again and sent as 1.0.
                return Ok(None);
            }
        }
        if let Some(Final::Delivered) = outcome {
            for record in batch {
                self.count_sent(record);
            }
            return Ok(self.move_cursor(cursor, first + batch.len() as u64));
        }
        // A lone record's answer is its own verdict. A joined batch's answer is not.
        let mut known = match batch {
            [_] => outcome,
            _ => {
                tracing::debug!(endpoint = %self.name(), records = batch.len(), "shipper: joined batch not taken; sending its records one by one");
                None
            }
        };
        let mut at = cursor;
        for (seq, record) in (first..).zip(batch) {
            match self.deliver(record, known.take(), Some(seq + 1)).await? {
                None => self.count_sent(record),
                Some((status, answer)) => self.quarantine(seq, record, status, &answer),
            }
            match self.move_cursor(at, seq + 1) {
                Some(next) => at = next,
                None => return Ok(None),
            }
        }
        Ok(Some(at))
    }

    fn count_sent(&self, record: &Record) {
        let samples = u64::from(record.meta.samples) + u64::from(record.meta.histograms);
        if samples > 0 {
            let ts = record.meta.max_ts;
            self.update(|s| s.shipped_data_ts = Some(s.shipped_data_ts.map_or(ts, |t| t.max(ts))));
        }
        let m = &METRICS;
        m.shipper
            .sent_records
            .with_label_values(&[self.name()])
            .inc();
        m.shipper
            .sent_samples
            .with_label_values(&[self.name()])
            .inc_by(samples);
        m.shipper
            .sent_bytes
            .with_label_values(&[self.name()])
            .inc_by(record.payload.len() as u64);
        self.update(|s| {
            s.sent_records += 1;
            s.sent_samples += samples;
            s.sent_bytes += record.payload.len() as u64;
        });
    }

    fn quarantine(&self, seq: u64, record: &Record, status: u16, answer: &str) {
        let samples = u64::from(record.meta.samples) + u64::from(record.meta.histograms);
        tracing::error!(
            endpoint = %self.name(), seq, status, answer = %answer,
            group = %record.group, source = %record.source, samples,
            "shipper: storage rejected the batch permanently; quarantined, moving on"
        );
        if let Err(e) = self
            .wal
            .quarantine(self.name(), seq, record, status, answer)
        {
            tracing::error!(endpoint = %self.name(), seq, error = %e, "shipper: could not store the quarantined batch; it is lost");
        }
        METRICS
            .shipper
            .quarantined
            .with_label_values(&[self.name()])
            .inc();
        let now = self.sender.clock.now_ms();
        self.update(|s| {
            s.quarantined += 1;
            s.last_error = Some(format!("HTTP {status}: {answer}"));
            s.last_error_ms = Some(now);
        });
    }

    /// Sends a quarantined batch again (operator request). If it is delivered, it leaves
    /// the quarantine. If it is rejected again, it stays, with the new answer.
    pub(super) async fn replay_quarantined(&mut self, seq: u64) -> Result<(), Stop> {
        let record = match self.wal.quarantine_get(self.name(), seq) {
            Ok(Some((_, record))) => record,
            Ok(None) => {
                tracing::warn!(endpoint = %self.name(), seq, "shipper: quarantined batch to replay is gone");
                return Ok(());
            }
            Err(e) => {
                tracing::error!(endpoint = %self.name(), seq, error = %e, "shipper: cannot read the quarantine");
                return Ok(());
            }
        };
        match self.deliver(&record, None, None).await? {
            None => {
                self.count_sent(&record);
                if let Err(e) = self.wal.quarantine_remove(self.name(), seq) {
                    tracing::error!(endpoint = %self.name(), seq, error = %e, "shipper: could not remove the replayed batch from the quarantine");
                }
                tracing::info!(endpoint = %self.name(), seq, "shipper: quarantined batch replayed and delivered");
            }
            Some((status, answer)) => {
                tracing::warn!(endpoint = %self.name(), seq, status, answer = %answer, "shipper: replayed batch rejected again; it stays quarantined");
                if let Err(e) = self
                    .wal
                    .quarantine(self.name(), seq, &record, status, &answer)
                {
                    tracing::error!(endpoint = %self.name(), seq, error = %e, "shipper: could not update the quarantine");
                }
            }
        }
        Ok(())
    }

    /// Delivers one record, in parts if the storage says it is too large. Returns
    /// `Ok(None)` when it is delivered, and `Ok(Some((status, answer)))` when it is
    /// rejected permanently. `known` is the storage's earlier answer to the whole record,
    /// if any. `end` is the sequence after the record's, when it is in the buffer (not for
    /// a replay from the quarantine).
    async fn deliver(
        &mut self,
        record: &Record,
        mut known: Option<Final>,
        end: Option<u64>,
    ) -> Result<Option<(u16, String)>, Stop> {
        let version = self.speaker.wire(record);
        let first = match payload_in(record, version, self.name()) {
            Ok(payload) => payload,
            Err(e) => return Ok(Some(unconvertible(&e))),
        };
        let mut parts: Vec<(Bytes, Version)> = vec![(first, version)];
        let mut rejected: Option<(u16, String)> = None;
        while let Some((part, version)) = parts.pop() {
            // A known answer was learnt from by `settle` already.
            let (outcome, sent) = match known.take() {
                Some(outcome) => (outcome, false),
                None => (
                    self.sender.send_until_final(&part, version, end).await?,
                    true,
                ),
            };
            if sent && version == Version::V2 && self.learn_protocol(&outcome) {
                match to_v1(record, self.name()) {
                    Ok(v1) => parts.push((v1, Version::V1)),
                    Err(e) => rejected = Some(unconvertible(&e)),
                }
                continue;
            }
            match outcome {
                Final::Delivered => {}
                Final::TooLarge => self.split(record, part, version, &mut parts, &mut rejected),
                Final::Reject { status, answer } => rejected = Some((status, answer)),
                Final::NotV2 { status, reason } => rejected = Some((status, reason)),
            }
        }
        Ok(rejected)
    }

    /// A part the storage found too large (413) goes again in halves, as 1.0: a 2.0 part
    /// (a whole record) is converted first.
    fn split(
        &self,
        record: &Record,
        part: Bytes,
        version: Version,
        parts: &mut Vec<(Bytes, Version)>,
        rejected: &mut Option<(u16, String)>,
    ) {
        let part = match version {
            Version::V1 => part,
            Version::V2 => match to_v1(record, self.name()) {
                Ok(v1) => v1,
                Err(e) => {
                    *rejected = Some(unconvertible(&e));
                    return;
                }
            },
        };
        match halve(&part) {
            Some((first, second)) => {
                tracing::warn!(endpoint = %self.name(), bytes = part.len(), "shipper: storage answered 413, sending the batch in halves");
                parts.push((second, Version::V1));
                parts.push((first, Version::V1));
            }
            None => *rejected = Some((413, "too large and cannot be split".into())),
        }
    }
}
