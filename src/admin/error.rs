//! How the admin API answers a request it cannot serve: JSON `{error, detail}` with the
//! status that fits. Every handler returns this one error type with `?`.

use std::fmt;

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};

use crate::api;
use crate::cluster::transfer::TransferError;
use crate::cluster::ClusterWriteError;
use crate::election::ElectionError;
use crate::shipper::ShipperError;
use crate::wal::WalError;

/// A refused or failed admin request.
#[derive(Debug)]
pub struct AdminError {
    status: StatusCode,
    /// A short code for scripts, e.g. `unknown_endpoint`.
    code: &'static str,
    /// One line for people.
    detail: String,
}

impl AdminError {
    /// An error with this status, code and detail.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        AdminError {
            status,
            code,
            detail: detail.into(),
        }
    }

    /// 400: the request itself is wrong.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }

    /// 401: the request needs the admin token.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this needs Authorization: Bearer <admin token>",
        )
    }

    /// 404: a cluster action on a standalone node.
    pub fn not_clustered() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_clustered",
            "this node runs standalone (no --peers)",
        )
    }

    /// 500: something on this side failed.
    pub fn internal(detail: impl fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            detail.to_string(),
        )
    }
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl ResponseError for AdminError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status).json(api::ErrorBody {
            error: self.code.to_owned(),
            detail: self.detail.clone(),
        });
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

impl From<ElectionError> for AdminError {
    fn from(e: ElectionError) -> Self {
        let (status, code) = match &e {
            ElectionError::UnknownGroup(_) => (StatusCode::NOT_FOUND, "unknown_group"),
            ElectionError::UnknownSource { .. } => (StatusCode::NOT_FOUND, "unknown_source"),
            ElectionError::NotPinned(_) => (StatusCode::CONFLICT, "not_pinned"),
            ElectionError::NothingPromoted(_) => (StatusCode::CONFLICT, "nothing_promoted"),
            ElectionError::NoCandidate(_) => (StatusCode::CONFLICT, "no_candidate"),
            ElectionError::UntilInPast => (StatusCode::BAD_REQUEST, "until_in_past"),
            ElectionError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "storage"),
        };
        Self::new(status, code, e.to_string())
    }
}

impl From<ShipperError> for AdminError {
    fn from(e: ShipperError) -> Self {
        let (status, code) = match e {
            ShipperError::UnknownEndpoint(_) => (StatusCode::NOT_FOUND, "unknown_endpoint"),
            ShipperError::Direction(_) => (StatusCode::BAD_REQUEST, "wrong_direction"),
            ShipperError::NotQuarantined(_) => (StatusCode::NOT_FOUND, "not_quarantined"),
            ShipperError::Wal(w) => return w.into(),
        };
        Self::new(status, code, e.to_string())
    }
}

impl From<WalError> for AdminError {
    fn from(e: WalError) -> Self {
        let (status, code) = match &e {
            WalError::UnknownEndpoint(_) => (StatusCode::NOT_FOUND, "unknown_endpoint"),
            WalError::NotBuffered { .. } => (StatusCode::CONFLICT, "not_buffered"),
            WalError::Full { .. } | WalError::DiskFull(_) | WalError::Closed => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            WalError::Storage(_) | WalError::StateDamaged { .. } | WalError::Disk(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "storage")
            }
        };
        Self::new(status, code, e.to_string())
    }
}

impl From<ClusterWriteError> for AdminError {
    fn from(e: ClusterWriteError) -> Self {
        let status = match &e {
            ClusterWriteError::Rejected { .. } => StatusCode::CONFLICT,
            _ if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.as_label(), e.to_string())
    }
}

impl From<TransferError> for AdminError {
    fn from(e: TransferError) -> Self {
        let status = if e.is_retryable() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::CONFLICT
        };
        Self::new(status, e.as_label(), e.to_string())
    }
}

impl From<actix_web::error::BlockingError> for AdminError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        Self::internal(e)
    }
}
