//! The invocation's body exactly as the Runtime API delivered it.
//!
//! `lambda_runtime` parses every payload with serde_json before the handler sees it: a 6 MB
//! event would be parsed twice, bytes after the event dropped, and a body that is not JSON
//! answered with the runtime's own `errorType`. [`RawBodies`] is a layer in front of that
//! parse: it takes each invocation's body and hands the runtime `null` to parse instead, and
//! the handler takes the body back by request id.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use lambda_runtime::LambdaInvocation;
use lambda_runtime::tower::{Layer, Service};

/// The body of the invocation in progress, keyed by its request id.
#[derive(Debug, Clone, Default)]
pub struct RawBodies(Arc<Mutex<Option<(String, Bytes)>>>);

impl RawBodies {
    /// The body of invocation `request_id` (empty if it was never seen, which the runtime's
    /// one-at-a-time loop rules out).
    pub fn take(&self, request_id: &str) -> Bytes {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match slot.take() {
            Some((id, body)) if id == request_id => body,
            other => {
                *slot = other;
                Bytes::new()
            }
        }
    }
}

impl<S> Layer<S> for RawBodies {
    type Service = TakeBody<S>;

    fn layer(&self, inner: S) -> TakeBody<S> {
        TakeBody {
            inner,
            bodies: self.clone(),
        }
    }
}

/// The service [`RawBodies`] puts in front of the runtime's own.
pub struct TakeBody<S> {
    inner: S,
    bodies: RawBodies,
}

impl<S: Service<LambdaInvocation>> Service<LambdaInvocation> for TakeBody<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut invocation: LambdaInvocation) -> S::Future {
        let body = std::mem::replace(&mut invocation.body, Bytes::from_static(b"null"));
        let mut slot = self.bodies.0.lock().unwrap_or_else(|p| p.into_inner());
        *slot = Some((invocation.context.request_id.clone(), body));
        drop(slot);
        self.inner.call(invocation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_taken_once_and_only_by_its_own_request() {
        let bodies = RawBodies::default();
        *bodies.0.lock().unwrap() = Some(("req-1".into(), Bytes::from_static(b"{} x")));
        assert_eq!(bodies.take("req-2"), Bytes::new());
        assert_eq!(bodies.take("req-1"), Bytes::from_static(b"{} x"));
        assert_eq!(bodies.take("req-1"), Bytes::new());
    }
}
