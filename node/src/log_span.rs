//! The `driver{view, height}` span that the driver's log lines carry (issue 11 item 7).
//!
//! The driver task runs inside a span with the current consensus `view` and committed
//! `height`, so every line it writes — consensus, commits, peers' messages — says when it
//! happened; JSON lines carry them in their `span` object ([`json_layer`]), text lines as a
//! `driver{view=… height=…}:` prefix.
//!
//! **Cost.** The span is entered and left once per poll of the driver task (a few registry
//! operations), not per event; [`ConsensusSpan::update`], called after every step, only
//! compares two integers unless the view or the height changed. A change creates a new span
//! (one allocation and a few µs) and switches to it on the spot, so lines written later in the
//! same poll carry the new values. A new span rather than `Span::record` on a long-lived one:
//! the text formatter appends recorded values to the span's text, which would grow by one
//! `view=…` per view for the life of the process.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use tracing::{Level, Span};
use tracing_subscriber::fmt::format::{Format, Json, JsonFields};

/// The JSON formatting layer of `log_format = "json"`: each line carries its fields, the
/// current span's fields (`"span": {"name": "driver", "view": …, "height": …}`) and no list of
/// the enclosing spans. Writes to stdout; `.with_writer` changes that.
pub fn json_layer<S>() -> tracing_subscriber::fmt::Layer<S, JsonFields, Format<Json>>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(false)
}

/// The span entered while the driver runs, and whether it is entered now.
#[derive(Debug)]
struct Slot {
    span: Span,
    entered: bool,
}

/// The driver's `driver{view, height}` span (module docs). Owned by the driver; its future is
/// wrapped by [`ConsensusSpan::start`]'s [`SpanScope`].
#[derive(Debug)]
pub struct ConsensusSpan {
    slot: Arc<Mutex<Slot>>,
    /// The span the driver was started in (the node's), parent of every `driver` span.
    parent: Span,
    view: u64,
    height: u64,
}

impl Default for ConsensusSpan {
    fn default() -> Self {
        ConsensusSpan {
            slot: Arc::new(Mutex::new(Slot {
                span: Span::none(),
                entered: false,
            })),
            parent: Span::none(),
            view: u64::MAX,
            height: u64::MAX,
        }
    }
}

fn lock(slot: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

fn enter(span: &Span) {
    span.with_subscriber(|(id, dispatch)| dispatch.enter(id));
}

fn exit(span: &Span) {
    span.with_subscriber(|(id, dispatch)| dispatch.exit(id));
}

impl ConsensusSpan {
    /// Start with `view` and committed `height`, as a child of the current span. Wrap the
    /// driver's future in the returned scope.
    pub fn start(&mut self, view: u64, height: u64) -> SpanScope {
        self.parent = Span::current();
        self.view = u64::MAX;
        self.update(view, height);
        SpanScope {
            slot: self.slot.clone(),
        }
    }

    /// The view or committed height may have changed: if so, switch to a new span carrying
    /// them. Two comparisons otherwise.
    pub fn update(&mut self, view: u64, height: u64) {
        if (view, height) == (self.view, self.height) {
            return;
        }
        self.view = view;
        self.height = height;
        // ERROR level: enabled whenever any line is, so WARN lines carry it at `log_level = warn`.
        let new = tracing::span!(parent: &self.parent, Level::ERROR, "driver", view, height);
        let old = {
            let mut s = lock(&self.slot);
            if s.entered {
                exit(&s.span);
                enter(&new);
            }
            std::mem::replace(&mut s.span, new)
        };
        drop(old); // closed outside the lock
    }

    /// The current span (disabled before [`ConsensusSpan::start`] or when no subscriber wants
    /// it).
    pub fn current(&self) -> Span {
        lock(&self.slot).span.clone()
    }
}

/// Enters a [`ConsensusSpan`]'s current span around every poll of a future.
#[derive(Debug)]
pub struct SpanScope {
    slot: Arc<Mutex<Slot>>,
}

impl SpanScope {
    /// `fut`, run inside the span.
    pub fn instrument<F: Future>(self, fut: F) -> InSpan<F> {
        InSpan {
            fut: Box::pin(fut),
            slot: self.slot,
        }
    }
}

/// A future run inside a [`ConsensusSpan`] ([`SpanScope::instrument`]).
#[derive(Debug)]
pub struct InSpan<F> {
    fut: Pin<Box<F>>,
    slot: Arc<Mutex<Slot>>,
}

/// Leaves the slot's span when the poll ends, even by a panic.
struct Leave<'a>(&'a Mutex<Slot>);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        let mut s = lock(self.0);
        s.entered = false;
        exit(&s.span);
    }
}

impl<F: Future> Future for InSpan<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        {
            let mut s = lock(&this.slot);
            s.entered = true;
            enter(&s.span);
        }
        let _leave = Leave(&this.slot);
        this.fut.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_limit::tests::Buf;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn json_lines_in_the_driver_span_carry_view_and_height() {
        let buf = Buf::default();
        let sub = tracing_subscriber::registry().with(crate::log_limit::RateLimited::new(
            json_layer().with_writer(buf.clone()),
        ));
        tracing::subscriber::with_default(sub, || {
            let node = tracing::info_span!("node", validator = 2);
            let mut span = ConsensusSpan::default();
            let scope = node.in_scope(|| span.start(7, 3));
            futures::executor::block_on(scope.instrument(async move {
                tracing::warn!(peer = "12D3Koo", "before");
                span.update(8, 4);
                tracing::info!("after");
                span.update(8, 4);
            }));
            tracing::info!("outside");
        });
        let lines: Vec<serde_json::Value> = buf
            .lines()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert_eq!(lines[0]["span"]["name"], "driver");
        assert_eq!(lines[0]["span"]["view"], 7);
        assert_eq!(lines[0]["span"]["height"], 3);
        assert_eq!(lines[0]["fields"]["peer"], "12D3Koo");
        assert_eq!(lines[1]["span"]["view"], 8);
        assert_eq!(lines[1]["span"]["height"], 4);
        assert!(lines[2].get("span").is_none(), "{}", lines[2]);
    }

    #[test]
    fn text_lines_show_the_span_without_accumulating_values() {
        let buf = Buf::default();
        let fmt = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(buf.clone());
        tracing::subscriber::with_default(tracing_subscriber::registry().with(fmt), || {
            let mut span = ConsensusSpan::default();
            let scope = span.start(1, 0);
            futures::executor::block_on(scope.instrument(async move {
                for v in 1..=100 {
                    span.update(v, v / 2);
                }
                tracing::info!("late");
            }));
        });
        let lines = buf.lines();
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].contains("driver{view=100 height=50}: "),
            "{}",
            lines[0]
        );
    }
}
