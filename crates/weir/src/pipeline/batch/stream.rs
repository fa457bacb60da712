//! Size-or-time batches over any stream.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::time::{Instant, Sleep};

pin_project_lite::pin_project! {
    /// The stream of [`Batcher::batches`](super::Batcher::batches): emits a
    /// batch when it holds `max_items`, or when `max_wait` has passed since
    /// its first item arrived, whichever comes first; never an empty batch;
    /// the remainder when the input ends.
    #[must_use = "streams do nothing unless polled"]
    pub struct Batches<S: Stream> {
        #[pin]
        input: S,
        buffer: Vec<S::Item>,
        max_items: usize,
        max_wait: Duration,
        // Armed when a batch gets its first item.
        #[pin]
        deadline: Sleep,
        input_done: bool,
    }
}

impl<S: Stream> Batches<S> {
    pub(crate) fn new(input: S, max_items: usize, max_wait: Duration) -> Self {
        Self {
            input,
            buffer: Vec::with_capacity(max_items),
            max_items,
            max_wait,
            deadline: tokio::time::sleep(max_wait),
            input_done: false,
        }
    }
}

impl<S: Stream> Stream for Batches<S> {
    type Item = Vec<S::Item>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Vec<S::Item>>> {
        let mut this = self.project();
        let take = |buffer: &mut Vec<S::Item>, max: usize| std::mem::replace(buffer, Vec::with_capacity(max));
        while !*this.input_done {
            match this.input.as_mut().poll_next(cx) {
                Poll::Ready(Some(item)) => {
                    if this.buffer.is_empty() {
                        this.deadline.as_mut().reset(Instant::now() + *this.max_wait);
                    }
                    this.buffer.push(item);
                    if this.buffer.len() >= *this.max_items {
                        return Poll::Ready(Some(take(this.buffer, *this.max_items)));
                    }
                }
                Poll::Ready(None) => *this.input_done = true,
                Poll::Pending => {
                    if !this.buffer.is_empty() && this.deadline.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Some(take(this.buffer, *this.max_items)));
                    }
                    return Poll::Pending;
                }
            }
        }
        if this.buffer.is_empty() { Poll::Ready(None) } else { Poll::Ready(Some(take(this.buffer, *this.max_items))) }
    }
}
