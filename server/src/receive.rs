//! Receiving request bodies within one budget of bytes shared by every connection, so that
//! many large bodies arriving at once wait for each other instead of all being held in memory.
//!
//! A body reserves twice its length (`Content-Length`, or the body limit when it is not given)
//! before a byte of it is read: its bytes, and as much again for the values decoded from them.
//! JSON whose values take more than its length (numbers of one digit) reserves the rest before
//! they are parsed, without waiting. The reservation ends once the input tensor is built; from
//! then on the queue's own bound counts the tensor.

use std::sync::Arc;

use axum::body::Body;
use axum::http::StatusCode;
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::ApiError;

/// The budget is counted in KiB (a semaphore's permits).
const UNIT: usize = 1 << 10;

fn units(bytes: usize) -> usize {
    bytes.div_ceil(UNIT)
}

/// The bytes of request bodies being received and decoded at once, at most.
pub(crate) struct Receiving {
    budget: Arc<Semaphore>,
    bytes: usize,
}

impl Receiving {
    pub(crate) fn new(bytes: usize) -> Receiving {
        Receiving {
            budget: Arc::new(Semaphore::new(units(bytes))),
            bytes,
        }
    }

    /// Waits until `bytes` fit in the budget, at most until `deadline` (then `503`).
    pub(crate) async fn reserve(
        &self,
        bytes: usize,
        deadline: Instant,
    ) -> Result<Reservation, ApiError> {
        let busy = || {
            ApiError::overloaded(format!(
                "the server is receiving {} MiB of requests at once already; retry later",
                self.bytes >> 20
            ))
        };
        let n = u32::try_from(units(bytes)).map_err(|_| busy())?;
        let acquire = Arc::clone(&self.budget).acquire_many_owned(n);
        match tokio::time::timeout_at(deadline, acquire).await {
            Ok(Ok(permit)) => Ok(Reservation {
                permit,
                budget: Arc::clone(&self.budget),
            }),
            _ => Err(busy()),
        }
    }
}

/// Bytes of the budget held by one request.
pub(crate) struct Reservation {
    permit: OwnedSemaphorePermit,
    budget: Arc<Semaphore>,
}

impl Reservation {
    /// Holds at least `bytes`: takes what is missing if it is free now (`503` if not; waiting
    /// while holding could deadlock with other requests doing the same).
    pub(crate) fn hold(&mut self, bytes: usize) -> Result<(), ApiError> {
        let missing = units(bytes).saturating_sub(self.permit.num_permits());
        if missing == 0 {
            return Ok(());
        }
        let more = u32::try_from(missing)
            .ok()
            .and_then(|n| Arc::clone(&self.budget).try_acquire_many_owned(n).ok())
            .ok_or_else(|| {
                ApiError::overloaded(
                    "the server is receiving too many requests at once to decode this one; \
                     retry later",
                )
            })?;
        self.permit.merge(more);
        Ok(())
    }

    /// Gives back what is held beyond `bytes`.
    pub(crate) fn keep(&mut self, bytes: usize) {
        let extra = self.permit.num_permits().saturating_sub(units(bytes));
        drop(self.permit.split(extra));
    }
}

/// Reads a body of at most `limit` bytes into one buffer (of `declared` bytes when the length
/// is known), by `deadline`, `timeout` after the request arrived: `413` past the limit, `408`
/// past the deadline.
pub(crate) async fn read_body(
    mut body: Body,
    limit: usize,
    declared: Option<usize>,
    deadline: Instant,
    timeout: std::time::Duration,
) -> Result<Vec<u8>, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body exceeds the limit of {limit} bytes"),
        )
    };
    let read = async {
        let mut out = Vec::with_capacity(declared.unwrap_or(0).min(limit));
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                ApiError::bad_request(format!("the request body could not be read: {e}"))
            })?;
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > limit {
                    return Err(too_large());
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(out)
    };
    match tokio::time::timeout_at(deadline, read).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} ms",
                timeout.as_millis()
            ),
        )),
    }
}
