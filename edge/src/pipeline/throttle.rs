//! Slowing repeated failed authentication from one client address, in the same counter objects
//! (`Host::counter`) the rate limits use, under the subject `auth-failures:ip:<address>`.
//!
//! Credentials are checked first: a valid key or token is never refused here, so an attacker
//! failing from the same address (a shared NAT, a guessed key) cannot lock its owner out. A failed
//! attempt is counted; past [`FAILURES_PER_MINUTE`] failures in a minute the client gets `429`
//! with `Retry-After` instead of `401`, after a short delay, so guessing costs the guesser time.
//! The address is the platform's (`http::client_ip`); without one nothing is counted.

use policy::limits::{Amounts, CounterOp, CounterReply, LimitSpec, Metric, Nanos, Window};

use crate::error::GatewayError;
use crate::host::Host;
use crate::http::{client_ip, Request};

/// Failed authentications one client address may make per minute before it is slowed.
pub const FAILURES_PER_MINUTE: u64 = 20;

/// How long a failure past the limit waits before it is answered.
pub const TARPIT_MS: u64 = 1_000;

/// Count a failed authentication of `request`; past the limit, the failure becomes a delayed `429`.
/// A counter store that cannot be asked leaves the original failure as it is (fail open: the
/// credential check itself already failed closed).
pub async fn failed<H: Host>(request: &Request, failure: GatewayError, host: &H) -> GatewayError {
    let Some(ip) = client_ip(request) else { return failure };
    let subject = format!("auth-failures:ip:{ip}");
    let id = format!("authfail_{:016x}", host.random_u64());
    let one = Amounts { requests: 1, input_tokens: 0, output_tokens: 0, total_tokens: 0, cost: Nanos::ZERO };
    let admit = CounterOp::Admit {
        specs: vec![LimitSpec::new(Metric::Requests, Window::Minute, FAILURES_PER_MINUTE)],
        amounts: one,
        reservation_id: id.clone(),
        ttl_ms: 60_000,
    };
    match host.counter(&subject, None, &admit).await {
        Ok(CounterReply::Admitted(admission)) if admission.allowed => {
            // Keep the failure counted for its window (a reservation alone would expire).
            let _ = host.counter(&subject, None, &CounterOp::Settle { reservation_id: id, actual: one }).await;
            failure
        }
        Ok(CounterReply::Admitted(admission)) => {
            host.sleep(TARPIT_MS).await;
            GatewayError::RateLimited {
                metric: "failed_authentications",
                window: "minute",
                budget: false,
                too_large: false,
                retry_after_secs: Some(admission.retry_after_ms.unwrap_or(60_000).div_ceil(1000)),
                headers: Vec::new(),
            }
        }
        _ => failure,
    }
}

/// Whether an error is a refused credential (what the throttle counts).
pub fn is_credential_failure(error: &GatewayError) -> bool {
    matches!(error, GatewayError::InvalidCredential | GatewayError::InvalidToken { .. })
}
