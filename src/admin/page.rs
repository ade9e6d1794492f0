//! `GET /`: the status page. It is one self-contained HTML file, compiled into the binary:
//! inline CSS and JS, no external assets, no build step. It polls `/api/v1/status`,
//! `/groups` and `/queue` and renders them. So it shows exactly what the API and the CLI
//! show.
//!
//! The page itself carries no data and needs no token. When reads are protected, it asks
//! for the token and sends it as `Authorization: Bearer`. The tab's sessionStorage keeps
//! the token. The Content-Security-Policy allows only the inline code and requests to this
//! origin. So data that the page renders cannot pull anything in.

use actix_web::http::header;
use actix_web::HttpResponse;

/// The page.
const PAGE: &str = include_str!("page.html");

/// No external source, no framing, fetches to this origin only.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// Serves the page.
pub async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(PAGE)
}
