//! The request-body read timeout: a request body must arrive whole within
//! [`crate::ServeLimits::body_read_timeout`] of its request head, so a
//! client trickling a body (with a valid key or not) cannot hold a
//! connection and a handler for long.
//!
//! [`TimedBody`] wraps every request's body in the accept loop; a body read
//! past its deadline fails with [`BodyTimeout`], which [`crate::rejection`]
//! answers with 408 and a JSON body. A body that is never read (a WebSocket
//! upgrade, a `GET`) costs one timer entry that never fires.

use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The error a body read fails with past its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimeout(pub Duration);

/// A request body that fails once its deadline passes.
pub struct TimedBody<B> {
    inner: B,
    /// Built on the first read: most bodies are never read, or end at once.
    timer: Option<Pin<Box<Sleep>>>,
    deadline: Instant,
    limit: Duration,
}

impl<B> TimedBody<B> {
    /// `inner`, to be read within `limit` from now.
    pub fn new(inner: B, limit: Duration) -> TimedBody<B> {
        TimedBody {
            inner,
            timer: None,
            deadline: Instant::now() + limit,
            limit,
        }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(this.limit))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The [`BodyTimeout`] among `e` and its causes, if any.
pub fn timed_out<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyTimeout> {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<BodyTimeout>() {
            return Some(t);
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::FromRequest;
    use bytes::Bytes;
    use http_body_util::StreamBody;

    /// A body that sends one chunk and then nothing: a trickling client.
    fn stalled() -> axum::body::Body {
        let chunks = futures::stream::iter([Ok::<_, std::io::Error>(Frame::data(
            Bytes::from_static(b"{\"to\":"),
        ))])
        .chain(futures::stream::pending());
        axum::body::Body::new(TimedBody::new(
            StreamBody::new(chunks),
            Duration::from_secs(10),
        ))
    }

    use futures::StreamExt;

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_is_a_408_at_the_deadline() {
        let req = axum::http::Request::new(stalled());
        let started = Instant::now();
        let r = Bytes::from_request(req, &()).await.expect_err("timed out");
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        let e = crate::rejection(r);
        assert_eq!(e.status.as_u16(), 408);
        assert!(e.message.contains("did not arrive"), "{}", e.message);
    }

    #[tokio::test(start_paused = true)]
    async fn a_prompt_body_is_read_as_it_is() {
        let body = axum::body::Body::new(TimedBody::new(
            http_body_util::Full::new(Bytes::from_static(b"{}")),
            Duration::from_secs(10),
        ));
        let req = axum::http::Request::new(body);
        let got = Bytes::from_request(req, &()).await.expect("read");
        assert_eq!(&got[..], b"{}");
    }
}
