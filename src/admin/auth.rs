//! Bearer-token checks for the admin API: constant-time comparison, the token never logged.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use subtle::ConstantTimeEq;

use super::{error, Admin};

/// Who made a request, for the logs: the peer address and whether a token was presented.
pub fn caller(req: &HttpRequest) -> String {
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

/// `Some(refusal)` when the request lacks the right token.
fn check(admin: &Admin, req: &HttpRequest) -> Option<HttpResponse> {
    let expected = admin.token.as_ref()?;
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let ok = presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(expected.as_bytes())));
    if ok {
        return None;
    }
    tracing::warn!(
        caller = %caller(req),
        path = %req.path(),
        reason = if presented.is_some() { "wrong token" } else { "no token" },
        "admin: request refused"
    );
    let mut resp = error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "this needs Authorization: Bearer <admin token>",
    );
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    Some(resp)
}

/// Checks a mutation.
pub fn mutation(admin: &Admin, req: &HttpRequest) -> Option<HttpResponse> {
    check(admin, req)
}

/// Checks a read (only when reads are protected).
pub fn read(admin: &Admin, req: &HttpRequest) -> Option<HttpResponse> {
    if admin.token_reads {
        check(admin, req)
    } else {
        None
    }
}
