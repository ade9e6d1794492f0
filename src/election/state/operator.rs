//! Operator overrides of the election: pin a source, remove the pin, fail over now. An
//! override that cannot apply is refused with an [`ElectionError`]. Reasons: an unknown
//! group or source, nothing to move away from, no live candidate, or an `until` already
//! past.

use super::{alive, Change, ElectionState, GroupView, PinKind, PinView, PromotedView, Reason};

/// Why an operator request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElectionError {
    /// No such group has been seen.
    #[error("no group named {0:?} has been seen")]
    UnknownGroup(String),
    /// No such source has been seen in the group.
    #[error("no source named {name:?} has been seen in group {group:?}")]
    UnknownSource {
        /// Group.
        group: String,
        /// Source.
        name: String,
    },
    /// The group has no pin to remove.
    #[error("group {0:?} is not pinned")]
    NotPinned(String),
    /// Failover needs a promoted source to move away from.
    #[error("group {0:?} has no promoted source to fail over from")]
    NothingPromoted(String),
    /// Failover needs another live source.
    #[error("group {0:?} has no other source that wrote within the health expiry")]
    NoCandidate(String),
    /// The `until` time is already past.
    #[error("until is in the past")]
    UntilInPast,
    /// The durable store failed. The change was applied in memory only.
    #[error("could not store the change: {0}")]
    Storage(String),
}

impl ElectionState {
    /// The group an override applies to. An `until` already past is refused.
    fn override_target(
        &mut self,
        group_name: &str,
        until_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<&mut GroupView, ElectionError> {
        if until_ms.is_some_and(|u| u <= now_ms) {
            return Err(ElectionError::UntilInPast);
        }
        self.groups
            .get_mut(group_name)
            .ok_or_else(|| ElectionError::UnknownGroup(group_name.to_owned()))
    }

    /// Pins `source` in `group`. The source is preferred over any weight until it is
    /// unpinned or `until` passes. If it wrote within the expiry, it is promoted at once.
    pub fn pin(
        &mut self,
        group_name: &str,
        source: &str,
        until_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<Option<Change>, ElectionError> {
        let expiry_ms = self.expiry_ms;
        let group = self.override_target(group_name, until_ms, now_ms)?;
        let Some(seen) = group.sources.get(source) else {
            return Err(ElectionError::UnknownSource {
                group: group_name.to_owned(),
                name: source.to_owned(),
            });
        };
        let alive = alive(seen, now_ms, expiry_ms);
        let weight = seen.weight;
        group.pin = Some(PinView {
            source: source.to_owned(),
            kind: PinKind::Pin,
            since_ms: now_ms,
            until_ms,
        });
        let previous = group.promoted.as_ref().map(|p| p.source.clone());
        if !alive || previous.as_deref() == Some(source) {
            return Ok(None);
        }
        group.promoted = Some(PromotedView {
            source: source.to_owned(),
            weight,
            since_ms: now_ms,
        });
        Ok(Some(Change::Promoted {
            group: group_name.to_owned(),
            source: source.to_owned(),
            weight,
            reason: Reason::Pinned { previous },
        }))
    }

    /// Removes the group's pin. Weights count again from the next write on.
    pub fn unpin(&mut self, group_name: &str) -> Result<PinView, ElectionError> {
        let group = self.override_target(group_name, None, 0)?;
        group
            .pin
            .take()
            .ok_or_else(|| ElectionError::NotPinned(group_name.to_owned()))
    }

    /// Demotes the promoted source now. Promotes the best other source that wrote within
    /// the expiry (highest weight, then most recent write). The new source is pinned (kind
    /// `failover`), so the old source does not take over again by weight.
    pub fn failover(
        &mut self,
        group_name: &str,
        until_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<Change, ElectionError> {
        let expiry_ms = self.expiry_ms;
        let group = self.override_target(group_name, until_ms, now_ms)?;
        let previous = group
            .promoted
            .as_ref()
            .map(|p| p.source.clone())
            .ok_or_else(|| ElectionError::NothingPromoted(group_name.to_owned()))?;
        let (next, weight) = group
            .sources
            .iter()
            .filter(|(id, s)| **id != previous && alive(s, now_ms, expiry_ms))
            .max_by_key(|(_, s)| (s.weight, s.last_data_ts.unwrap_or(i64::MIN), s.last_seen_ms))
            .map(|(id, s)| (id.clone(), s.weight))
            .ok_or_else(|| ElectionError::NoCandidate(group_name.to_owned()))?;
        group.promoted = Some(PromotedView {
            source: next.clone(),
            weight,
            since_ms: now_ms,
        });
        group.pin = Some(PinView {
            source: next.clone(),
            kind: PinKind::Failover,
            since_ms: now_ms,
            until_ms,
        });
        Ok(Change::Promoted {
            group: group_name.to_owned(),
            source: next,
            weight,
            reason: Reason::Failover { previous },
        })
    }
}
