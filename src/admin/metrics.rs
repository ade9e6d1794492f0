//! `GET /metrics`. It fills the scrape-time gauges from the parts' handles. Then it encodes
//! the whole registry in the Prometheus text format.

use std::sync::atomic::Ordering;

use actix_web::{web, HttpResponse};

use super::auth::Read;
use super::views::queue_view;
use super::{Admin, AdminError};
use crate::metrics::{encode, METRICS};
use crate::shipper::EndpointState;

const STATES: [(EndpointState, &str); 7] = [
    (EndpointState::Standby, "standby"),
    (EndpointState::Idle, "idle"),
    (EndpointState::Shipping, "shipping"),
    (EndpointState::Backoff, "backoff"),
    (EndpointState::Failing, "failing"),
    (EndpointState::Unauthorized, "unauthorized"),
    (EndpointState::Paused, "paused"),
];

fn refresh(admin: &Admin) {
    let m = &METRICS;
    m.ready.set(i64::from(admin.ready.load(Ordering::Acquire)));
    let q = queue_view(admin);
    m.wal.records.set(q.records as i64);
    m.wal.bytes.set(q.bytes as i64);
    m.wal.max_bytes.set(q.max_bytes as i64);
    m.wal.oldest_age.set(q.oldest_age_seconds);
    m.wal.quarantined.set(q.quarantined as i64);
    m.wal
        .quarantined_bytes
        .set(admin.wal.quarantined_bytes() as i64);
    for e in &q.endpoints {
        m.shipper
            .lag_records
            .with_label_values(&[&e.worker.name])
            .set(e.position.lag_records as i64);
        m.shipper
            .lag_bytes
            .with_label_values(&[&e.worker.name])
            .set(e.position.lag_bytes as i64);
        m.shipper
            .lag_seconds
            .with_label_values(&[&e.worker.name])
            .set(e.position.lag_seconds);
        m.shipper
            .in_flight
            .with_label_values(&[&e.worker.name])
            .set(e.worker.in_flight as i64);
        for (state, label) in STATES {
            m.shipper
                .state
                .with_label_values(&[&e.worker.name, label])
                .set(i64::from(e.worker.state == state));
        }
    }
    if let Some(c) = &admin.cluster {
        let status = c.status();
        m.cluster
            .leader
            .set(i64::from(status.leader == Some(status.node_id)));
        m.cluster.term.set(status.term as i64);
        m.cluster.members.set(status.members.len() as i64);
        m.cluster.lease.set(i64::from(c.leader_lease().is_some()));
        m.cluster.replication_lag.reset();
        for r in &status.replication {
            m.cluster
                .replication_lag
                .with_label_values(&[&r.id.to_string()])
                .set(r.lag as i64);
        }
    }
    // Groups and sources come and go, so rebuild these from scratch.
    m.election.promoted.reset();
    m.election.sources.reset();
    for (name, group) in admin.promotions.groups() {
        m.election
            .sources
            .with_label_values(&[&name])
            .set(group.sources.len() as i64);
        if let Some(p) = &group.promoted {
            m.election
                .promoted
                .with_label_values(&[&name, &p.source])
                .set(1);
        }
    }
}

pub async fn metrics(admin: web::Data<Admin>, _: Read) -> Result<HttpResponse, AdminError> {
    let admin = admin.get_ref().clone();
    let text = web::block(move || {
        refresh(&admin);
        encode()
    })
    .await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}
