//! Retry classification as a value, and capped exponential backoff with full jitter.
//!
//! The `backoff` crate is flagged unmaintained (RUSTSEC-2025-0012). By default it gives up
//! after 15 minutes. So it stays behind this module, configured never to give up, and it
//! only supplies the exponential ceiling. The jitter is "full": a uniform draw in
//! [0, ceiling].

use std::time::{Duration, SystemTime};

use backoff::backoff::Backoff as _;

/// Most of an answer body kept for logs and the quarantine.
const ANSWER_LIMIT: usize = 512;

/// What one delivery attempt means for the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: the storage has it.
    Delivered,
    /// 5xx, 429, 401, 403 or a network error: try again later.
    Retry {
        /// HTTP status, `None` for a network error.
        status: Option<u16>,
        /// One line for logs and the admin API.
        reason: String,
        /// The storage's `Retry-After`, if it sent one.
        after: Option<Duration>,
    },
    /// 413: split the batch and send the halves.
    TooLarge,
    /// Any other 4xx: the storage will never take this batch.
    Reject {
        /// HTTP status.
        status: u16,
        /// The start of the storage's answer.
        answer: String,
    },
    /// A 2.0 request the storage did not read as 2.0: a 415, or a 2xx without the
    /// `X-Prometheus-Remote-Write-*-Written` headers.
    NotV2 {
        /// HTTP status.
        status: u16,
        /// One line for logs and the quarantine.
        reason: String,
    },
}

impl Verdict {
    /// The failure class for metrics (`5xx`, `429`, `413`, `auth`, `4xx`, `protocol`,
    /// `network`). `None`
    /// for a delivery.
    pub fn failure_class(&self) -> Option<&'static str> {
        match self {
            Verdict::Delivered => None,
            Verdict::TooLarge => Some("413"),
            Verdict::Reject { .. } => Some("4xx"),
            Verdict::NotV2 { .. } => Some("protocol"),
            Verdict::Retry { status, .. } => Some(match status {
                Some(429) => "429",
                Some(401 | 403) => "auth",
                Some(500..=599) => "5xx",
                // No answer, or an answer that should never reach us (1xx, 3xx).
                _ => "network",
            }),
        }
    }
}

/// Classifies an HTTP answer.
pub fn classify_status(status: u16, retry_after: Option<&str>, body: &str) -> Verdict {
    let answer = one_line(body);
    match status {
        200..=299 => Verdict::Delivered,
        413 => Verdict::TooLarge,
        // An expired or rotated credential: nothing is wrong with the data, and an
        // operator will fix the credential. Quarantining would set hours of data aside.
        401 | 403 => Verdict::Retry {
            status: Some(status),
            reason: format!(
                "HTTP {status}: the storage refuses highlander's credentials (check the endpoint's bearer token or basic auth){}",
                if answer.is_empty() { String::new() } else { format!(": {answer}") }
            ),
            after: retry_after.and_then(parse_retry_after),
        },
        429 | 500..=599 => Verdict::Retry {
            status: Some(status),
            reason: if answer.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {answer}")
            },
            after: retry_after.and_then(parse_retry_after),
        },
        // 1xx/3xx should never reach us, because redirects are followed. Treat them as
        // transient.
        100..=199 | 300..=399 => Verdict::Retry {
            status: Some(status),
            reason: format!("unexpected HTTP {status}"),
            after: None,
        },
        _ => Verdict::Reject { status, answer },
    }
}

/// Classifies a transport error (connect, timeout, reset). It is always retryable.
pub fn classify_error(err: &reqwest::Error) -> Verdict {
    let kind = if err.is_timeout() {
        "timeout"
    } else if err.is_connect() {
        "connect"
    } else {
        "transport"
    };
    let mut reason = format!("{kind} error: {err}");
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        reason.push_str(&format!(": {s}"));
        source = s.source();
    }
    Verdict::Retry {
        status: None,
        reason,
        after: None,
    }
}

/// `Retry-After` as delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

fn one_line(body: &str) -> String {
    let line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(ANSWER_LIMIT) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line,
    }
}

/// Capped exponential backoff with full jitter. It never gives up.
#[derive(Debug)]
pub struct Backoff {
    ceiling: backoff::ExponentialBackoff,
    max_retry_after: Duration,
}

impl Backoff {
    /// Starts at `initial` and doubles up to `max`. It honours a `Retry-After` up to
    /// `max_retry_after`.
    pub fn new(initial: Duration, max: Duration, max_retry_after: Duration) -> Self {
        let ceiling = backoff::ExponentialBackoffBuilder::new()
            .with_initial_interval(initial)
            .with_multiplier(2.0)
            .with_randomization_factor(0.0)
            .with_max_interval(max)
            .with_max_elapsed_time(None)
            .build();
        Backoff {
            ceiling,
            max_retry_after,
        }
    }

    /// A backoff with the same settings, at its first interval. Each concurrent send gets
    /// one.
    pub fn fresh(&self) -> Self {
        Backoff::new(
            self.ceiling.initial_interval,
            self.ceiling.max_interval,
            self.max_retry_after,
        )
    }

    /// The wait before the next attempt.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        let ceiling = self
            .ceiling
            .next_backoff()
            .unwrap_or(self.ceiling.max_interval);
        let jittered = ceiling.mul_f64(rand::random::<f64>());
        match retry_after {
            Some(after) => jittered.max(after.min(self.max_retry_after)),
            None => jittered,
        }
    }

    /// After a success, starts again from the initial interval.
    pub fn reset(&mut self) {
        self.ceiling.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_table() {
        let retry = |s: u16| matches!(classify_status(s, None, ""), Verdict::Retry { .. });
        for s in [200, 204, 299] {
            assert_eq!(classify_status(s, None, ""), Verdict::Delivered, "{s}");
        }
        for s in [429, 500, 502, 503, 504, 599, 401, 403] {
            assert!(retry(s), "{s} must be retried");
        }
        assert_eq!(classify_status(413, None, ""), Verdict::TooLarge);
        let class = |s: u16| classify_status(s, None, "HTTP 429 in the body").failure_class();
        assert_eq!(class(429), Some("429"));
        assert_eq!(
            class(503),
            Some("5xx"),
            "the class comes from the status, not the text"
        );
        assert_eq!(class(302), Some("network"));
        assert_eq!(class(400), Some("4xx"));
        assert_eq!(class(413), Some("413"));
        assert_eq!(class(401), Some("auth"));
        assert_eq!(class(403), Some("auth"));
        assert_eq!(class(204), None);
        for s in [400, 404, 409, 422] {
            assert!(
                matches!(classify_status(s, None, "bad"), Verdict::Reject { status, .. } if status == s),
                "{s} is permanent"
            );
        }
    }

    #[test]
    fn retry_after_seconds_and_date() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        let later = SystemTime::now() + Duration::from_secs(120);
        let d = parse_retry_after(&httpdate::fmt_http_date(later)).expect("date");
        assert!(
            d <= Duration::from_secs(120) && d >= Duration::from_secs(100),
            "{d:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
        match classify_status(429, Some("3"), "slow down") {
            Verdict::Retry { after, reason, .. } => {
                assert_eq!(after, Some(Duration::from_secs(3)));
                assert_eq!(reason, "HTTP 429: slow down");
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn answers_are_one_short_line() {
        let long = "x\ny ".repeat(1000);
        match classify_status(400, None, &long) {
            Verdict::Reject { answer, .. } => {
                assert!(!answer.contains('\n'));
                assert!(answer.chars().count() <= ANSWER_LIMIT + 1);
            }
            v => panic!("{v:?}"),
        }
    }

    /// Full jitter: once at the ceiling, the waits spread uniformly over [0, ceiling].
    /// Without the jitter (or with a partial one) every wait would sit at or near the
    /// ceiling, and this test fails.
    #[test]
    fn the_jitter_is_uniform_over_zero_to_the_ceiling() {
        let ceiling = Duration::from_secs(2);
        let mut b = Backoff::new(Duration::from_millis(100), ceiling, Duration::from_secs(60));
        // 100 ms doubles to the 2 s ceiling within six attempts.
        for _ in 0..6 {
            b.next_delay(None);
        }
        let n = 4_000;
        let fractions: Vec<f64> = (0..n)
            .map(|_| b.next_delay(None).as_secs_f64() / ceiling.as_secs_f64())
            .collect();
        assert!(fractions.iter().all(|f| (0.0..=1.0).contains(f)));
        let mean = fractions.iter().sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.03, "mean {mean}");
        // Each tenth of the range gets about a tenth of the waits (expected 400; the bound
        // is more than 6 standard deviations away).
        let mut deciles = [0usize; 10];
        for f in &fractions {
            deciles[((f * 10.0) as usize).min(9)] += 1;
        }
        assert!(
            deciles.iter().all(|&d| (280..=520).contains(&d)),
            "deciles {deciles:?}"
        );
    }

    #[test]
    fn backoff_is_capped_jittered_and_honours_retry_after() {
        let mut b = Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(2),
            Duration::from_secs(60),
        );
        for _ in 0..200 {
            assert!(b.next_delay(None) <= Duration::from_secs(2));
        }
        assert!(b.next_delay(Some(Duration::from_secs(10))) >= Duration::from_secs(10));
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(3600))),
            Duration::from_secs(60),
            "Retry-After is capped"
        );
        b.reset();
        assert!(b.next_delay(None) <= Duration::from_millis(100));
        // A fresh copy has the same settings and starts at the first interval.
        for _ in 0..10 {
            b.next_delay(None);
        }
        let mut f = b.fresh();
        assert!(f.next_delay(None) <= Duration::from_millis(100));
        for _ in 0..200 {
            assert!(f.next_delay(None) <= Duration::from_secs(2));
        }
        assert_eq!(
            f.next_delay(Some(Duration::from_secs(3600))),
            Duration::from_secs(60)
        );
    }
}
