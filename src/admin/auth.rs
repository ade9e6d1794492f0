//! Bearer-token checks for the admin API, as extractors. A handler that takes [`Mutation`]
//! or [`Read`] runs only for a caller with the right token. The comparison takes constant
//! time, and the token is never logged.

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use subtle::ConstantTimeEq;

use super::{Admin, AdminError};

/// Who made a request, for the logs: the peer address and whether a token was presented.
fn caller(req: &HttpRequest) -> String {
    let peer = req
        .peer_addr()
        .map_or_else(|| "unknown".to_owned(), |a| a.ip().to_string());
    let authed = req.headers().contains_key(header::AUTHORIZATION);
    if authed {
        format!("{peer} (token)")
    } else {
        peer
    }
}

/// Refuses the request unless it carries the configured token (any request passes when
/// no token is configured). `reads` says whether a read is being checked.
fn check(req: &HttpRequest, reads: bool) -> Result<(), AdminError> {
    let admin = req
        .app_data::<web::Data<Admin>>()
        .ok_or_else(|| AdminError::internal("the admin state is missing"))?;
    if reads && !admin.token_reads {
        return Ok(());
    }
    let Some(expected) = admin.token.as_ref() else {
        return Ok(());
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(expected.as_bytes()))) {
        return Ok(());
    }
    tracing::warn!(
        caller = %caller(req),
        path = %req.path(),
        reason = if presented.is_some() { "wrong token" } else { "no token" },
        "admin: request refused"
    );
    Err(AdminError::unauthorized())
}

/// A request that is allowed to change something. `caller` names it in the action's log
/// line.
pub struct Mutation {
    /// The peer, and whether it presented a token.
    pub caller: String,
}

impl FromRequest for Mutation {
    type Error = AdminError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(check(req, false).map(|()| Mutation {
            caller: caller(req),
        }))
    }
}

/// A request allowed to read (reads need the token only with `--admin-token-reads`).
pub struct Read;

impl FromRequest for Read {
    type Error = AdminError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(check(req, true).map(|()| Read))
    }
}
