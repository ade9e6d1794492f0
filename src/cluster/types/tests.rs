//! ControlState::apply and the command forms: unit tests.

use super::*;
use crate::election::PinKind;

fn promote(group: &str, source: &str, weight: u64, at_ms: u64) -> Request {
    Request::Promote {
        group: group.into(),
        source: source.into(),
        weight,
        reason: Reason::NoPromotedSource,
        at_ms,
        expect: None,
    }
}

fn demote(group: &str, source: &str, at_ms: u64) -> Request {
    Request::Demote {
        group: group.into(),
        source: source.into(),
        at_ms,
        expect: None,
    }
}

fn watermark(endpoint: &str, data_ts: i64) -> Request {
    Request::Watermark {
        endpoint: endpoint.into(),
        data_ts,
        at_ms: 0,
    }
}

fn pin(source: &str) -> PinView {
    PinView {
        source: source.into(),
        kind: PinKind::Pin,
        since_ms: 7,
        until_ms: None,
    }
}

#[test]
fn first_promotion_starts_epoch_one() {
    let mut s = ControlState::default();
    assert_eq!(s.epoch("g"), 0);
    let r = s.apply(&promote("g", "a", 3, 100));
    assert_eq!(
        r,
        Response::Group {
            epoch: 1,
            changed: true
        }
    );
    let p = s.promoted("g").expect("promoted");
    assert_eq!(
        (p.source.as_str(), p.weight, p.since_ms, p.epoch),
        ("a", 3, 100, 1)
    );
    assert_eq!(s.groups["g"].changed_ms, 100);
}

#[test]
fn every_promotion_and_demotion_bumps_the_epoch() {
    let mut s = ControlState::default();
    s.apply(&promote("g", "a", 1, 1));
    let r = s.apply(&Request::Promote {
        group: "g".into(),
        source: "b".into(),
        weight: 5,
        reason: Reason::BiggerWeight {
            previous: "a".into(),
            previous_weight: 1,
        },
        at_ms: 2,
        expect: None,
    });
    assert_eq!(
        r,
        Response::Group {
            epoch: 2,
            changed: true
        }
    );
    assert_eq!(s.promoted("g").map(|p| p.epoch), Some(2));
    let r = s.apply(&demote("g", "b", 3));
    assert_eq!(
        r,
        Response::Group {
            epoch: 3,
            changed: true
        }
    );
    assert!(s.promoted("g").is_none());
    assert_eq!(s.epoch("g"), 3);
    assert_eq!(s.groups["g"].changed_ms, 3);
    s.apply(&promote("g", "a", 1, 4));
    assert_eq!(s.promoted("g").map(|p| p.epoch), Some(4));
}

#[test]
fn repromoting_the_promoted_source_only_refreshes_its_weight() {
    let mut s = ControlState::default();
    s.apply(&promote("g", "a", 1, 10));
    let r = s.apply(&promote("g", "a", 9, 20));
    assert_eq!(
        r,
        Response::Group {
            epoch: 1,
            changed: false
        }
    );
    let p = s.promoted("g").expect("promoted");
    assert_eq!((p.weight, p.since_ms, p.epoch), (9, 10, 1));
}

#[test]
fn stale_demotion_leaves_the_successor_promoted() {
    let mut s = ControlState::default();
    s.apply(&promote("g", "a", 1, 1));
    s.apply(&promote("g", "b", 2, 2));
    let r = s.apply(&demote("g", "a", 3));
    assert_eq!(
        r,
        Response::Group {
            epoch: 2,
            changed: false
        }
    );
    assert_eq!(s.promoted("g").map(|p| p.source.as_str()), Some("b"));
}

#[test]
fn demoting_in_an_unknown_group_creates_nothing() {
    let mut s = ControlState::default();
    let r = s.apply(&demote("nope", "a", 1));
    assert_eq!(
        r,
        Response::Group {
            epoch: 0,
            changed: false
        }
    );
    assert!(s.groups.is_empty());
}

#[test]
fn groups_are_independent() {
    let mut s = ControlState::default();
    s.apply(&promote("g1", "a", 1, 1));
    s.apply(&promote("g2", "x", 1, 1));
    s.apply(&demote("g1", "a", 2));
    assert_eq!(s.epoch("g1"), 2);
    assert_eq!(s.epoch("g2"), 1);
    assert_eq!(s.promoted("g2").map(|p| p.source.as_str()), Some("x"));
}

#[test]
fn pins_are_set_replaced_and_removed_without_touching_the_epoch() {
    let mut s = ControlState::default();
    let set = |s: &mut ControlState, p: Option<PinView>| {
        s.apply(&Request::SetPin {
            group: "g".into(),
            pin: p,
            expect: None,
        })
    };
    assert_eq!(set(&mut s, None), Response::Pin { changed: false });
    assert!(s.groups.is_empty());
    assert_eq!(set(&mut s, Some(pin("a"))), Response::Pin { changed: true });
    assert_eq!(
        set(&mut s, Some(pin("a"))),
        Response::Pin { changed: false }
    );
    assert_eq!(set(&mut s, Some(pin("b"))), Response::Pin { changed: true });
    assert_eq!(s.groups["g"].pin, Some(pin("b")));
    assert_eq!(set(&mut s, None), Response::Pin { changed: true });
    assert_eq!(s.groups["g"].pin, None);
    assert_eq!(s.epoch("g"), 0);
}

#[test]
fn a_command_decided_on_another_state_of_its_group_changes_nothing() {
    let mut s = ControlState::default();
    s.apply(&promote("g", "a", 1, 1));
    let on_a = Expect::of(&s, "g");
    assert_eq!(
        on_a,
        Expect {
            epoch: 1,
            promoted: Some("a".into()),
            pin: None
        }
    );
    // An operator pin lands first: the stale takeover and demotion are ignored.
    s.apply(&Request::SetPin {
        group: "g".into(),
        pin: Some(pin("a")),
        expect: None,
    });
    let before = s.clone();
    let r = s.apply(&Request::Promote {
        group: "g".into(),
        source: "b".into(),
        weight: 9,
        reason: Reason::BiggerWeight {
            previous: "a".into(),
            previous_weight: 1,
        },
        at_ms: 2,
        expect: Some(on_a.clone()),
    });
    assert_eq!(
        r,
        Response::Group {
            epoch: 1,
            changed: false
        }
    );
    let r = s.apply(&Request::Demote {
        group: "g".into(),
        source: "a".into(),
        at_ms: 2,
        expect: Some(on_a.clone()),
    });
    assert_eq!(
        r,
        Response::Group {
            epoch: 1,
            changed: false
        }
    );
    // Nor does removing a pin that was replaced since the decision.
    let r = s.apply(&Request::SetPin {
        group: "g".into(),
        pin: None,
        expect: Some(on_a),
    });
    assert_eq!(r, Response::Pin { changed: false });
    assert_eq!(s, before);
    // The same commands decided on the current state apply.
    let now = Expect::of(&s, "g");
    let r = s.apply(&Request::Demote {
        group: "g".into(),
        source: "a".into(),
        at_ms: 3,
        expect: Some(now),
    });
    assert_eq!(
        r,
        Response::Group {
            epoch: 2,
            changed: true
        }
    );
}

#[test]
fn commands_logged_without_an_expectation_still_apply() {
    let json = r#"{"op":"promote","group":"g","source":"a","weight":1,
        "reason":{"kind":"no_promoted_source"},"at_ms":5}"#;
    let r: Request = serde_json::from_str(json).expect("deserialize");
    assert_eq!(r, promote("g", "a", 1, 5));
    let json = serde_json::to_value(&r).expect("serialize");
    assert!(json.get("expect").is_none(), "{json}");
    let mut s = ControlState::default();
    assert_eq!(
        s.apply(&r),
        Response::Group {
            epoch: 1,
            changed: true
        }
    );
}

#[test]
fn watermarks_never_move_back() {
    let mut s = ControlState::default();
    assert_eq!(s.watermark("vm"), None);
    assert_eq!(
        s.apply(&watermark("vm", 1_000)),
        Response::Watermark {
            data_ts: 1_000,
            moved: true
        }
    );
    assert_eq!(
        s.apply(&watermark("vm", 900)),
        Response::Watermark {
            data_ts: 1_000,
            moved: false
        }
    );
    assert_eq!(
        s.apply(&watermark("vm", 1_000)),
        Response::Watermark {
            data_ts: 1_000,
            moved: false
        }
    );
    assert_eq!(
        s.apply(&watermark("vm", 2_000)),
        Response::Watermark {
            data_ts: 2_000,
            moved: true
        }
    );
    s.apply(&watermark("other", -5));
    assert_eq!(s.watermark("vm"), Some(2_000));
    assert_eq!(s.watermark("other"), Some(-5));
}

#[test]
fn requests_and_state_round_trip_through_json() {
    let requests = [
        promote("g", "a", 1, 2),
        demote("g", "a", 3),
        Request::SetPin {
            group: "g".into(),
            pin: Some(pin("a")),
            expect: None,
        },
        watermark("vm", 4),
    ];
    let mut s = ControlState::default();
    for r in &requests {
        let json = serde_json::to_string(r).expect("serialize");
        let back: Request = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(&back, r);
        s.apply(r);
    }
    let json = serde_json::to_vec(&s).expect("serialize");
    let back: ControlState = serde_json::from_slice(&json).expect("deserialize");
    assert_eq!(back, s);
    let json = serde_json::to_value(&requests[0]).expect("serialize");
    assert_eq!(json["op"], "promote");
}

#[test]
fn the_same_log_gives_the_same_state() {
    let log = [
        promote("g", "a", 1, 1),
        watermark("vm", 10),
        promote("g", "b", 2, 2),
        demote("g", "a", 3),
        watermark("vm", 5),
        demote("g", "b", 4),
    ];
    let run = || {
        let mut s = ControlState::default();
        let responses: Vec<_> = log.iter().map(|r| s.apply(r)).collect();
        (s, responses)
    };
    assert_eq!(run(), run());
}
