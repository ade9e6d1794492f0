//! Unit tests of the election rules, with plain-number time.

use super::*;

fn obs<'a>(source: &'a str, weight: u64) -> Observation<'a> {
    Observation {
        protocol: Default::default(),
        group: "g",
        source,
        weight,
        samples: 10,
        data_ts: None,
    }
}

#[test]
fn first_writer_is_promoted() {
    let mut s = ElectionState::new(5_000);
    let (role, change) = s.observe(obs("a", 1), 1_000);
    assert_eq!(role, Role::Promoted);
    assert_eq!(
        change,
        Some(Change::Promoted {
            group: "g".into(),
            source: "a".into(),
            weight: 1,
            reason: Reason::NoPromotedSource
        })
    );
    let (role, change) = s.observe(obs("b", 1), 1_100);
    assert_eq!((role, change), (Role::Standby, None));
}

#[test]
fn equal_or_smaller_weight_does_not_take_over() {
    let mut s = ElectionState::new(5_000);
    s.observe(obs("a", 5), 0);
    assert_eq!(s.observe(obs("b", 5), 10).0, Role::Standby);
    assert_eq!(s.observe(obs("c", 4), 20).0, Role::Standby);
    assert_eq!(s.observe(obs("a", 5), 30).0, Role::Promoted);
}

#[test]
fn strictly_bigger_weight_takes_over() {
    let mut s = ElectionState::new(5_000);
    s.observe(obs("a", 5), 0);
    let (role, change) = s.observe(obs("b", 6), 10);
    assert_eq!(role, Role::Promoted);
    assert_eq!(
        change,
        Some(Change::Promoted {
            group: "g".into(),
            source: "b".into(),
            weight: 6,
            reason: Reason::BiggerWeight {
                previous: "a".into(),
                previous_weight: 5
            }
        })
    );
    assert_eq!(s.observe(obs("a", 5), 20).0, Role::Standby);
}

#[test]
fn promoted_source_lowering_its_weight_can_be_overtaken() {
    let mut s = ElectionState::new(5_000);
    s.observe(obs("a", 5), 0);
    s.observe(obs("a", 1), 10);
    assert_eq!(s.observe(obs("b", 2), 20).0, Role::Promoted);
}

#[test]
fn silent_promoted_source_is_demoted_after_expiry() {
    let mut s = ElectionState::new(5_000);
    s.observe(obs("a", 1), 0);
    s.observe(obs("b", 1), 100);
    assert!(s.tick(4_999).is_empty());
    // b wrote within the expiry: it is promoted at the same tick.
    assert_eq!(
        s.tick(5_000),
        vec![
            Change::Demoted {
                group: "g".into(),
                source: "a".into(),
                silent_ms: 5_000
            },
            Change::Promoted {
                group: "g".into(),
                source: "b".into(),
                weight: 1,
                reason: Reason::NoPromotedSource
            }
        ]
    );
    assert_eq!(s.observe(obs("b", 1), 5_100), (Role::Promoted, None));
}

#[test]
fn without_a_live_standby_the_next_writer_is_promoted() {
    let mut s = ElectionState::new(1_000);
    s.observe(obs("a", 1), 0);
    s.observe(obs("b", 1), 0);
    // Both silent: a is demoted, b is not alive either.
    assert_eq!(s.tick(1_000).len(), 1);
    assert!(s.groups()["g"].promoted.is_none());
    let (role, change) = s.observe(obs("c", 0), 1_100);
    assert_eq!(role, Role::Promoted);
    assert!(matches!(
        change,
        Some(Change::Promoted {
            reason: Reason::NoPromotedSource,
            ..
        })
    ));
}

#[test]
fn expiry_prefers_the_heaviest_then_the_freshest_live_standby() {
    let data = |source: &'static str, weight, ts| Observation {
        protocol: Default::default(),
        group: "g",
        source,
        weight,
        samples: 1,
        data_ts: Some(ts),
    };
    let mut s = ElectionState::new(1_000);
    s.observe(data("a", 9, 10_000), 0);
    s.observe(data("light", 1, 10_000), 500);
    s.observe(data("lagging", 5, 4_000), 600);
    s.observe(data("fresh", 5, 9_900), 700);
    let changes = s.tick(1_000);
    assert!(
        matches!(&changes[1], Change::Promoted { source, .. } if source == "fresh"),
        "{changes:?}"
    );
}

#[test]
fn writes_keep_the_promoted_source_alive() {
    let mut s = ElectionState::new(5_000);
    for t in (0..60_000).step_by(1_000) {
        s.observe(obs("a", 1), t);
        assert!(s.tick(t + 500).is_empty());
    }
}

#[test]
fn groups_are_independent() {
    let mut s = ElectionState::new(5_000);
    let a = Observation {
        protocol: Default::default(),
        group: "eu",
        source: "a",
        weight: 1,
        samples: 1,
        data_ts: None,
    };
    let b = Observation {
        protocol: Default::default(),
        group: "us",
        source: "b",
        weight: 1,
        samples: 1,
        data_ts: None,
    };
    assert_eq!(s.observe(a, 0).0, Role::Promoted);
    assert_eq!(s.observe(b, 0).0, Role::Promoted);
    assert_eq!(s.groups().len(), 2);
}

#[test]
fn counters_and_forgetting() {
    let mut s = ElectionState::new(1_000);
    s.observe(obs("a", 1), 0);
    s.observe(obs("b", 1), 0);
    s.observe(obs("b", 1), 10);
    let g = &s.groups()["g"];
    assert_eq!(g.sources["a"].samples_accepted, 10);
    assert_eq!(g.sources["b"].requests_dropped, 2);
    assert_eq!(g.sources["b"].samples_dropped, 20);
    // Long silence: a is demoted, both are forgotten, the group disappears.
    s.tick(2_000);
    s.tick(10 * 60_000);
    assert!(s.groups().is_empty());
}

#[test]
fn pin_promotes_a_live_source_and_ignores_weights() {
    let mut s = ElectionState::new(5_000);
    s.observe(obs("a", 10), 0);
    s.observe(obs("b", 1), 10);
    let change = s.pin("g", "b", None, 20).expect("pin");
    assert!(matches!(
        change,
        Some(Change::Promoted { ref source, reason: Reason::Pinned { previous: Some(ref p) }, .. }) if source == "b" && p == "a"
    ));
    // a's bigger weight no longer takes over.
    assert_eq!(s.observe(obs("a", 99), 30).0, Role::Standby);
    assert_eq!(s.observe(obs("b", 1), 40).0, Role::Promoted);
}

#[test]
fn silent_pinned_source_is_demoted_then_takes_over_when_back() {
    let mut s = ElectionState::new(1_000);
    s.observe(obs("a", 1), 0);
    s.observe(obs("b", 5), 0);
    s.pin("g", "a", None, 10).expect("pin");
    assert_eq!(s.tick(1_000).len(), 1, "a demoted after the expiry");
    assert_eq!(s.observe(obs("b", 5), 1_100).0, Role::Promoted);
    let (role, change) = s.observe(obs("a", 1), 1_200);
    assert_eq!(role, Role::Promoted);
    assert!(matches!(
        change,
        Some(Change::Promoted {
            reason: Reason::Pinned { .. },
            ..
        })
    ));
}

#[test]
fn pin_needs_a_known_group_and_source_and_a_future_until() {
    let mut s = ElectionState::new(1_000);
    assert_eq!(
        s.pin("g", "a", None, 0),
        Err(ElectionError::UnknownGroup("g".into()))
    );
    s.observe(obs("a", 1), 0);
    assert!(matches!(
        s.pin("g", "zz", None, 0),
        Err(ElectionError::UnknownSource { .. })
    ));
    assert_eq!(
        s.pin("g", "a", Some(5), 10),
        Err(ElectionError::UntilInPast)
    );
}

#[test]
fn pin_expires_at_until() {
    let mut s = ElectionState::new(100_000);
    s.observe(obs("a", 1), 0);
    s.observe(obs("b", 1), 0);
    s.pin("g", "b", Some(5_000), 10).expect("pin");
    assert!(s.tick(4_999).is_empty());
    assert_eq!(
        s.tick(5_000),
        vec![Change::PinExpired {
            group: "g".into(),
            source: "b".into()
        }]
    );
    // Weights count again.
    assert_eq!(s.observe(obs("a", 2), 5_100).0, Role::Promoted);
}

#[test]
fn unpin_lets_weights_count_again() {
    let mut s = ElectionState::new(5_000);
    s.observe(obs("a", 1), 0);
    s.observe(obs("b", 9), 0);
    s.pin("g", "a", None, 0).expect("pin");
    assert_eq!(s.observe(obs("b", 9), 10).0, Role::Standby);
    assert_eq!(s.unpin("g").expect("unpin").source, "a");
    assert_eq!(s.unpin("g"), Err(ElectionError::NotPinned("g".into())));
    assert_eq!(s.observe(obs("b", 9), 20).0, Role::Promoted);
}

#[test]
fn failover_picks_the_heaviest_then_freshest_live_source_and_sticks() {
    let mut s = ElectionState::new(1_000);
    s.observe(obs("a", 100), 0);
    s.observe(obs("stale", 50), 0); // heavier, but silent for longer than the expiry
    s.observe(obs("b", 5), 1_500);
    s.observe(obs("c", 5), 1_600);
    s.observe(obs("a", 100), 1_600);
    let change = s.failover("g", None, 1_700).expect("failover");
    assert_eq!(
        change,
        Change::Promoted {
            group: "g".into(),
            source: "c".into(),
            weight: 5,
            reason: Reason::Failover {
                previous: "a".into()
            }
        }
    );
    assert_eq!(
        s.groups()["g"].pin.as_ref().map(|p| p.kind),
        Some(PinKind::Failover)
    );
    // a is alive and heavier, but the failover holds.
    assert_eq!(s.observe(obs("a", 100), 1_800).0, Role::Standby);
    assert_eq!(s.observe(obs("c", 5), 1_800).0, Role::Promoted);
}

#[test]
fn failover_without_candidate_or_promoted_source_is_refused() {
    let mut s = ElectionState::new(1_000);
    assert!(matches!(
        s.failover("g", None, 0),
        Err(ElectionError::UnknownGroup(_))
    ));
    s.observe(obs("a", 1), 0);
    assert_eq!(
        s.failover("g", None, 10),
        Err(ElectionError::NoCandidate("g".into()))
    );
    s.tick(2_000);
    s.observe(obs("b", 1), 2_000);
    s.tick(10_000);
    assert_eq!(
        s.failover("g", None, 10_000),
        Err(ElectionError::NothingPromoted("g".into()))
    );
}

fn seen(weight: u64, last_seen_ms: u64, data: i64) -> SourceView {
    SourceView {
        weight,
        first_seen_ms: 0,
        last_seen_ms,
        last_data_ts: Some(data),
        ..SourceView::default()
    }
}

#[test]
fn decide_promotes_the_best_live_source_of_an_empty_group() {
    let mut s = ElectionState::new(1_000);
    s.see("g", "a", &seen(1, 900, 100));
    s.see("g", "b", &seen(5, 950, 100));
    s.see("g", "stale", &seen(9, 0, 100));
    let changes = s.decide(1_000);
    assert!(
        matches!(&changes[..], [Change::Promoted { source, reason: Reason::NoPromotedSource, .. }] if source == "b"),
        "{changes:?}"
    );
    assert!(s.decide(1_100).is_empty(), "stable once decided");
}

#[test]
fn decide_applies_bigger_weight_and_pins_from_the_merged_view() {
    let mut s = ElectionState::new(1_000);
    s.restore(
        "g",
        Some(PromotedView {
            source: "a".into(),
            weight: 1,
            since_ms: 0,
        }),
        None,
    );
    s.see("g", "a", &seen(1, 990, 100));
    // Another node saw b, heavier, recently: it takes over.
    s.see("g", "b", &seen(3, 995, 100));
    let changes = s.decide(1_000);
    assert!(
        matches!(&changes[..], [Change::Promoted { source, reason: Reason::BiggerWeight { .. }, .. }] if source == "b"),
        "{changes:?}"
    );
    // A pin on a beats the weight.
    s.restore(
        "g",
        Some(PromotedView {
            source: "b".into(),
            weight: 3,
            since_ms: 0,
        }),
        Some(PinView {
            source: "a".into(),
            kind: PinKind::Pin,
            since_ms: 0,
            until_ms: None,
        }),
    );
    let changes = s.decide(1_000);
    assert!(
        matches!(&changes[..], [Change::Promoted { source, reason: Reason::Pinned { .. }, .. }] if source == "a"),
        "{changes:?}"
    );
}

#[test]
fn see_merges_views_of_several_nodes() {
    let mut s = ElectionState::new(1_000);
    s.see("g", "a", &seen(1, 500, 10));
    s.see("g", "a", &seen(2, 800, 5));
    s.see("g", "a", &seen(7, 600, 20));
    let v = &s.groups()["g"].sources["a"];
    assert_eq!(
        (v.weight, v.last_seen_ms, v.last_data_ts),
        (2, 800, Some(20))
    );
}
