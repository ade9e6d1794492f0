//! The leader's decision as pure functions. The tests cover what a new leader may and may
//! not conclude from what it has heard, and the conditions its commands carry.
//! `cluster::sim_tests` checks the same rules under message loss and reordering, over
//! many seeds.

use super::*;
use crate::election::PinKind;

const EXPIRY: u64 = 5_000;

fn promote(source: &str, weight: u64, at_ms: u64) -> Request {
    Request::Promote {
        group: "g".into(),
        source: source.into(),
        weight,
        reason: Reason::NoPromotedSource,
        at_ms,
        expect: None,
    }
}

/// `source` last seen writing at `last_seen_ms` with `weight`.
fn seen(source: &str, weight: u64, last_seen_ms: u64) -> Seen {
    Seen {
        group: "g".into(),
        source: source.into(),
        view: SourceView {
            weight,
            first_seen_ms: 0,
            last_seen_ms,
            ..SourceView::default()
        },
    }
}

fn committed(requests: &[Request]) -> ControlState {
    let mut state = ControlState::default();
    for r in requests {
        state.apply(r);
    }
    state
}

/// What a round changes, as (kind, source).
fn decided(requests: &[Request]) -> Vec<(&'static str, &str)> {
    requests
        .iter()
        .map(|r| match r {
            Request::Promote { source, .. } => ("promote", source.as_str()),
            Request::Demote { source, .. } => ("demote", source.as_str()),
            Request::SetPin { .. } => ("pin", ""),
            Request::Watermark { .. } => ("watermark", ""),
        })
        .collect()
}

#[test]
fn a_new_leader_keeps_a_promoted_source_it_has_not_heard_of_for_one_expiry() {
    // "a" was promoted long ago and writes only to other nodes; the new leader has no
    // report yet and its own view does not have "a".
    let state = committed(&[promote("a", 1, 1_000)]);
    let took_over = 100_000;
    let none: [Seen; 0] = [];
    let r = decide(EXPIRY, &state, &none, took_over, took_over);
    assert!(r.is_empty(), "{r:?}");
    let r = decide(EXPIRY, &state, &none, took_over, took_over + EXPIRY - 1);
    assert!(r.is_empty(), "{r:?}");
    // A whole expiry without news from any node: silent after all.
    let r = decide(EXPIRY, &state, &none, took_over, took_over + EXPIRY);
    assert_eq!(decided(&r), [("demote", "a")]);
}

#[test]
fn a_new_leader_with_a_stale_view_does_not_fail_over_a_writing_source() {
    // The leader's own view of "a" is old (it stopped reaching this node); "b" writes here.
    let state = committed(&[promote("a", 1, 1_000)]);
    let took_over = 100_000;
    let views = [seen("a", 1, 2_000), seen("b", 1, took_over)];
    let r = decide(EXPIRY, &state, &views, took_over, took_over + 1_000);
    assert!(r.is_empty(), "{r:?}");
    // Once a report shows "a" writing, it stays promoted past the grace as well.
    let later = took_over + EXPIRY + 1_000;
    let views = [seen("a", 1, later - 500), seen("b", 1, later)];
    assert!(decide(EXPIRY, &state, &views, took_over, later).is_empty());
}

#[test]
fn a_new_leader_holds_a_bigger_weight_takeover_until_it_hears_of_the_promoted_source() {
    // "a" was promoted with weight 1 but restarted with weight 3, writing only to other
    // nodes; "b" (weight 2) writes here.
    let state = committed(&[promote("a", 1, 1_000)]);
    let took_over = 100_000;
    let now = took_over + 1_000;
    let r = decide(EXPIRY, &state, &[seen("b", 2, now)], took_over, now);
    assert!(r.is_empty(), "{r:?}");
    // The first report shows "a" at weight 3: still no takeover.
    let views = [seen("a", 3, now), seen("b", 2, now)];
    assert!(decide(EXPIRY, &state, &views, took_over, now).is_empty());
    // Had "a" really been at weight 1, "b" takes over as soon as the leader knows.
    let views = [seen("a", 1, now), seen("b", 2, now)];
    let r = decide(EXPIRY, &state, &views, took_over, now);
    assert_eq!(decided(&r), [("promote", "b")]);
}

#[test]
fn the_promoted_source_is_compared_by_the_weight_of_its_latest_write() {
    let state = committed(&[promote("a", 3, 1_000)]);
    let took_over = 0;
    let now = 50_000;
    // "a" restarted with weight 1: "b" (2) outweighs it, as in the standalone election.
    let views = [seen("a", 1, now), seen("b", 2, now)];
    let r = decide(EXPIRY, &state, &views, took_over, now);
    assert_eq!(decided(&r), [("promote", "b")]);
    match &r[0] {
        Request::Promote { reason, .. } => assert_eq!(
            *reason,
            Reason::BiggerWeight {
                previous: "a".into(),
                previous_weight: 1
            }
        ),
        other => panic!("{other:?}"),
    }
    // A view older than the promotion does not lower the weight it was promoted with.
    let views = [seen("a", 1, 900), seen("b", 2, now)];
    let merged = merge(EXPIRY, &state, &views, None);
    assert_eq!(
        merged.groups()["g"].promoted.as_ref().map(|p| p.weight),
        Some(3)
    );
}

#[test]
fn each_command_of_a_round_expects_the_group_as_the_commands_before_it_leave_it() {
    let state = committed(&[promote("a", 1, 1_000)]);
    let now = 100_000;
    // "a" silent for long, "b" writing: demote "a", promote "b".
    let r = decide(EXPIRY, &state, &[seen("b", 1, now)], 0, now);
    assert_eq!(decided(&r), [("demote", "a"), ("promote", "b")]);
    let expects: Vec<_> = r
        .iter()
        .map(|r| match r {
            Request::Promote { expect, .. } | Request::Demote { expect, .. } => expect.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(
        expects,
        [
            Some(Expect {
                epoch: 1,
                promoted: Some("a".into()),
                pin: None
            }),
            Some(Expect {
                epoch: 2,
                promoted: None,
                pin: None
            }),
        ]
    );
    // Applied in order they land; after an operator's promotion in between, neither does.
    let mut s = state.clone();
    for request in &r {
        s.apply(request);
    }
    assert_eq!(s.promoted("g").map(|p| p.source.as_str()), Some("b"));
    let mut s = state.clone();
    s.apply(&promote("c", 1, now));
    for request in &r {
        s.apply(request);
    }
    assert_eq!(s.promoted("g").map(|p| p.source.as_str()), Some("c"));
}

#[test]
fn an_operator_pin_is_unconditional_and_its_promotion_expects_the_pin() {
    let state = committed(&[promote("a", 1, 1_000)]);
    let now = 10_000;
    let views = [seen("a", 1, now), seen("b", 1, now)];
    let mut election = merge(EXPIRY, &state, &views, None);
    let change = election.pin("g", "b", None, now).expect("pin");
    let r = override_requests("g", &state, &election, change.into_iter().collect(), now);
    assert_eq!(decided(&r), [("pin", ""), ("promote", "b")]);
    let pin = match &r[0] {
        Request::SetPin { pin, expect, .. } => {
            assert_eq!(*expect, None);
            pin.clone().expect("a pin")
        }
        other => panic!("{other:?}"),
    };
    assert_eq!((pin.source.as_str(), pin.kind), ("b", PinKind::Pin));
    match &r[1] {
        Request::Promote { expect, .. } => assert_eq!(
            *expect,
            Some(Expect {
                epoch: 1,
                promoted: Some("a".into()),
                pin: Some(pin)
            })
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_write_is_forwarded_only_from_the_committed_promoted_source() {
    let state = committed(&[promote("a", 1, 1_000)]);
    let obs = |group, source| Observation {
        protocol: Default::default(),
        group,
        source,
        weight: 1,
        samples: 1,
        data_ts: None,
    };
    assert_eq!(role(&state, &obs("g", "a")), Role::Promoted);
    assert_eq!(role(&state, &obs("g", "b")), Role::Standby);
    assert_eq!(role(&state, &obs("other", "a")), Role::Undecided);
}

#[test]
fn a_node_forgets_sources_silent_for_the_forget_window() {
    let mut local = LocalView::default();
    let obs = |source| Observation {
        protocol: Default::default(),
        group: "g",
        source,
        weight: 1,
        samples: 1,
        data_ts: Some(5),
    };
    local.record(&obs("a"), Role::Promoted, 1_000);
    local.record(&obs("b"), Role::Standby, 9_000);
    let names = |seen: Vec<Seen>| seen.into_iter().map(|s| s.source).collect::<Vec<_>>();
    assert_eq!(names(local.seen(10_000, 10_000)), ["a", "b"]);
    assert_eq!(names(local.seen(11_000, 10_000)), ["b"]);
}
