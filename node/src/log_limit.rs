//! Rate limiting of repeated warnings (issue 11 item 7).
//!
//! [`RateLimited`] wraps the formatting layer (text or JSON, [`crate::init_logging`]). Events at
//! WARN and ERROR level pass at most [`MAX_EVENTS_PER_WINDOW`] times per key per [`WINDOW`];
//! the rest of that window's events for the key are counted and dropped. INFO and below always
//! pass. A key is the callsite (the `warn!`/`error!` line), or, for an event with a `peer`
//! field, the callsite and the peer's value: one noisy peer does not silence the same line for
//! the others. So that an attacker minting peer ids cannot get [`MAX_EVENTS_PER_WINDOW`] lines
//! per id, a callsite's events with a `peer` field also share a cap of
//! [`MAX_PEER_EVENTS_PER_WINDOW`] per window across all peers.
//!
//! **The suppressed count.** Once a key's window is over, the first event of that key that
//! passes is preceded by one WARN line `suppressed N repeated log lines` with the fields
//! `suppressed` (N), `callsite` (`target:line` of the limited line) and, for a per-peer key,
//! `peer`. A count for a key that never logs again is not reported.
//!
//! **Bounds.** Per-callsite state is one entry per `warn!`/`error!` line of the binary that
//! fired (a fixed, finite set). Per-peer state is at most [`MAX_PEER_KEYS`] entries: at the
//! cap, the entry seen least recently is evicted and its unreported count moves to its
//! callsite's entry (reported with that callsite's next line). A peer value is keyed by at most
//! [`MAX_PEER_VALUE_BYTES`] bytes of its text.
//!
//! **No re-entrancy hazard.** The state's lock is held only to update counters; the field
//! visit that reads `peer` runs before it is taken and every line is written after it is
//! released, so a `Debug` impl or writer that logs cannot deadlock.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tracing::callsite::{Callsite, Identifier};
use tracing::field::{Field, FieldSet, Value, Visit};
use tracing::level_filters::LevelFilter;
use tracing::metadata::Kind;
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Level, Metadata, Subscriber, span};
use tracing_subscriber::layer::{Context, Layer};

/// Most WARN/ERROR events one key (callsite, or callsite and peer) lets through per
/// [`WINDOW`]; events.
pub const MAX_EVENTS_PER_WINDOW: u32 = 10;
/// Most WARN/ERROR events with a `peer` field one callsite lets through per [`WINDOW`], all
/// peers together; events.
pub const MAX_PEER_EVENTS_PER_WINDOW: u32 = 100;
/// The rate-limiting window: 10 seconds.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Most (callsite, peer) keys tracked at once; entries. The least recently seen is evicted.
pub const MAX_PEER_KEYS: usize = 1024;
/// Longest prefix of a `peer` value used as a key; bytes.
pub const MAX_PEER_VALUE_BYTES: usize = 128;

/// The limits a [`Limiter`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Events per key per window ([`MAX_EVENTS_PER_WINDOW`]).
    pub max_events: u32,
    /// Events with a `peer` field per callsite per window ([`MAX_PEER_EVENTS_PER_WINDOW`]).
    pub max_peer_events: u32,
    /// The window ([`WINDOW`]).
    pub window: Duration,
    /// (callsite, peer) keys tracked at most ([`MAX_PEER_KEYS`]).
    pub max_peer_keys: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_events: MAX_EVENTS_PER_WINDOW,
            max_peer_events: MAX_PEER_EVENTS_PER_WINDOW,
            window: WINDOW,
            max_peer_keys: MAX_PEER_KEYS,
        }
    }
}

/// The time source of a [`Limiter`] (injectable for tests).
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// One key's window.
#[derive(Debug)]
struct Window {
    start: Instant,
    /// Events let through in this window.
    passed: u32,
    /// Events dropped in this window.
    suppressed: u64,
    /// Dropped in earlier windows, not reported yet.
    pending: u64,
    last_seen: Instant,
}

impl Window {
    fn new(now: Instant) -> Self {
        Window {
            start: now,
            passed: 0,
            suppressed: 0,
            pending: 0,
            last_seen: now,
        }
    }

    /// Start a new window if this one is over; the dropped count becomes pending.
    fn roll(&mut self, now: Instant, window: Duration) {
        self.last_seen = now;
        if now.saturating_duration_since(self.start) >= window {
            self.pending += self.suppressed;
            self.suppressed = 0;
            self.passed = 0;
            self.start = now;
        }
    }

    /// Whether this window already let `max` events through; if so the event is counted as
    /// dropped.
    fn full(&mut self, max: u32) -> bool {
        let full = self.passed >= max;
        if full {
            self.suppressed += 1;
        }
        full
    }

    /// Let an event of `meta` (with `peer`) through; queue the pending count to report first.
    fn pass(
        &mut self,
        meta: &'static Metadata<'static>,
        peer: Option<&str>,
        reports: &mut Vec<Report>,
    ) {
        self.passed += 1;
        if self.pending > 0 {
            reports.push(Report {
                meta,
                peer: peer.map(str::to_owned),
                suppressed: std::mem::take(&mut self.pending),
            });
        }
    }
}

/// Counters of all keys.
#[derive(Default)]
struct State {
    callsites: HashMap<Identifier, (Window, &'static Metadata<'static>)>,
    peers: HashMap<(Identifier, String), Window>,
}

/// A count to report before the event that passes.
struct Report {
    meta: &'static Metadata<'static>,
    peer: Option<String>,
    suppressed: u64,
}

/// The shared state of a [`RateLimited`] layer: which events pass.
pub struct Limiter {
    limits: Limits,
    clock: Clock,
    state: Mutex<State>,
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("limits", &self.limits)
            .field("tracked_keys", &self.tracked_keys())
            .finish()
    }
}

impl Limiter {
    /// A limiter with `limits`, reading the time from `clock`.
    pub fn new(limits: Limits, clock: Clock) -> Self {
        Limiter {
            limits,
            clock,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keys tracked now: callsites plus (callsite, peer) pairs. The latter are at most
    /// [`Limits::max_peer_keys`].
    pub fn tracked_keys(&self) -> usize {
        let s = self.lock();
        s.callsites.len() + s.peers.len()
    }

    /// Whether `meta`'s event with `peer` passes, and the counts to report before it (pushed
    /// to `reports`).
    fn admit(
        &self,
        meta: &'static Metadata<'static>,
        peer: Option<String>,
        reports: &mut Vec<Report>,
    ) -> bool {
        let now = (self.clock)();
        let l = self.limits;
        let id = meta.callsite();
        let mut guard = self.lock();
        let state = &mut *guard;
        let (site, _) = state
            .callsites
            .entry(id.clone())
            .or_insert_with(|| (Window::new(now), meta));
        site.roll(now, l.window);
        let Some(peer) = peer else {
            if site.full(l.max_events) {
                return false;
            }
            site.pass(meta, None, reports);
            return true;
        };
        let key = (id, peer);
        if !state.peers.contains_key(&key) {
            if state.peers.len() >= l.max_peer_keys {
                let oldest = state
                    .peers
                    .iter()
                    .min_by_key(|(_, w)| w.last_seen)
                    .map(|(k, _)| k.clone());
                if let Some((w, site)) = oldest.and_then(|k| {
                    let w = state.peers.remove(&k)?;
                    Some((w, state.callsites.get_mut(&k.0)?))
                }) {
                    site.0.pending += w.pending + w.suppressed;
                }
            }
            state.peers.insert(key.clone(), Window::new(now));
        }
        let (Some(w), Some((site, _))) =
            (state.peers.get_mut(&key), state.callsites.get_mut(&key.0))
        else {
            return true;
        };
        w.roll(now, l.window);
        if w.full(l.max_events) || site.full(l.max_peer_events) {
            return false;
        }
        site.pass(meta, None, reports);
        w.pass(meta, Some(&key.1), reports);
        true
    }
}

/// A layer that passes events to `inner` under [`Limiter`]'s limits (module docs).
pub struct RateLimited<L> {
    inner: L,
    limiter: Arc<Limiter>,
}

impl<L> fmt::Debug for RateLimited<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimited")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl<L> RateLimited<L> {
    /// `inner` with the default [`Limits`] and the system clock.
    pub fn new(inner: L) -> Self {
        let limiter = Limiter::new(Limits::default(), Arc::new(Instant::now));
        Self::with_limiter(inner, Arc::new(limiter))
    }

    /// `inner` under `limiter` (which the caller may keep, e.g. to read
    /// [`Limiter::tracked_keys`]).
    pub fn with_limiter(inner: L, limiter: Arc<Limiter>) -> Self {
        RateLimited { inner, limiter }
    }
}

/// Reads the `peer` field of an event as text, at most [`MAX_PEER_VALUE_BYTES`] bytes.
#[derive(Default)]
struct PeerVisitor(Option<String>);

impl PeerVisitor {
    fn set(&mut self, f: impl FnOnce(&mut Bounded)) {
        let mut b = Bounded(String::new());
        f(&mut b);
        self.0 = Some(b.0);
    }
}

/// A string that keeps the first [`MAX_PEER_VALUE_BYTES`] bytes written to it.
struct Bounded(String);

impl fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = MAX_PEER_VALUE_BYTES.saturating_sub(self.0.len());
        if s.len() <= room {
            self.0.push_str(s);
            return Ok(());
        }
        let mut end = room;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.0.push_str(&s[..end]);
        Err(fmt::Error) // stop formatting: the rest is not part of the key
    }
}

impl Visit for PeerVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "peer" {
            self.set(|b| {
                let _ = b.write_str(value);
            });
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "peer" {
            self.set(|b| {
                let _ = write!(b, "{value:?}");
            });
        }
    }
}

/// The callsite of the `suppressed N repeated log lines` events.
struct SummaryCallsite;

static SUMMARY_CALLSITE: SummaryCallsite = SummaryCallsite;

static SUMMARY_META: Metadata<'static> = Metadata::new(
    "suppressed repeated log lines",
    module_path!(),
    Level::WARN,
    Some(file!()),
    Some(line!()),
    Some(module_path!()),
    FieldSet::new(
        &["message", "suppressed", "callsite", "peer"],
        Identifier(&SUMMARY_CALLSITE),
    ),
    Kind::EVENT,
);

impl Callsite for SummaryCallsite {
    fn set_interest(&self, _: Interest) {}

    fn metadata(&self) -> &Metadata<'_> {
        &SUMMARY_META
    }
}

impl<L> RateLimited<L> {
    /// Write `r` through `inner` as one WARN event (no lock held).
    fn report<S: Subscriber>(&self, r: &Report, ctx: &Context<'_, S>)
    where
        L: Layer<S>,
    {
        let fields = SUMMARY_META.fields();
        let (Some(f_msg), Some(f_n), Some(f_cs), Some(f_peer)) = (
            fields.field("message"),
            fields.field("suppressed"),
            fields.field("callsite"),
            fields.field("peer"),
        ) else {
            return;
        };
        let message = format!("suppressed {} repeated log lines", r.suppressed);
        let callsite = format!(
            "{}:{}",
            r.meta.target(),
            r.meta.line().map_or(0, |l| l as u64)
        );
        let peer = r.peer.as_deref();
        let values: [(&Field, Option<&dyn Value>); 4] = [
            (&f_msg, Some(&message as &dyn Value)),
            (&f_n, Some(&r.suppressed as &dyn Value)),
            (&f_cs, Some(&callsite as &dyn Value)),
            (&f_peer, peer.as_ref().map(|p| p as &dyn Value)),
        ];
        let values = fields.value_set(&values);
        self.inner
            .on_event(&Event::new(&SUMMARY_META, &values), ctx.clone());
    }
}

impl<S: Subscriber, L: Layer<S>> Layer<S> for RateLimited<L> {
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        self.inner.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.inner.on_layer(subscriber);
    }

    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        self.inner.register_callsite(metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.enabled(metadata, ctx)
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        self.inner.on_new_span(attrs, id, ctx);
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.inner.max_level_hint()
    }

    fn on_record(&self, span: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        self.inner.on_record(span, values, ctx);
    }

    fn on_follows_from(&self, span: &span::Id, follows: &span::Id, ctx: Context<'_, S>) {
        self.inner.on_follows_from(span, follows, ctx);
    }

    fn event_enabled(&self, event: &Event<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.event_enabled(event, ctx)
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() > Level::WARN {
            return self.inner.on_event(event, ctx);
        }
        let mut peer = PeerVisitor::default();
        if meta.fields().field("peer").is_some() {
            event.record(&mut peer);
        }
        let mut reports = Vec::new();
        // The lock is taken and released inside; nothing below runs under it.
        if !self.limiter.admit(meta, peer.0, &mut reports) {
            return;
        }
        for r in &reports {
            self.report(r, &ctx);
        }
        self.inner.on_event(event, ctx);
    }

    fn on_enter(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.inner.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.inner.on_exit(id, ctx);
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        self.inner.on_close(id, ctx);
    }

    fn on_id_change(&self, old: &span::Id, new: &span::Id, ctx: Context<'_, S>) {
        self.inner.on_id_change(old, new, ctx);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tracing::{info, warn};
    use tracing_subscriber::layer::SubscriberExt;

    /// A shared buffer the formatting layer writes to.
    #[derive(Clone, Default)]
    pub(crate) struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Buf {
        /// The lines written so far.
        pub(crate) fn lines(&self) -> Vec<String> {
            let bytes = self.0.lock().unwrap().clone();
            String::from_utf8(bytes)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buf {
        type Writer = Buf;

        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    /// A clock the test moves by hand.
    #[derive(Clone)]
    struct ManualClock(Arc<Mutex<Instant>>);

    impl ManualClock {
        fn new() -> Self {
            ManualClock(Arc::new(Mutex::new(Instant::now())))
        }

        fn advance(&self, d: Duration) {
            *self.0.lock().unwrap() += d;
        }

        fn clock(&self) -> Clock {
            let c = self.0.clone();
            Arc::new(move || *c.lock().unwrap())
        }
    }

    /// A text subscriber under the default limits on `clock`, writing to the returned buffer.
    fn text(clock: &ManualClock) -> (Dispatch, Buf, Arc<Limiter>) {
        let buf = Buf::default();
        let limiter = Arc::new(Limiter::new(Limits::default(), clock.clock()));
        let fmt = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(buf.clone());
        let sub =
            tracing_subscriber::registry().with(RateLimited::with_limiter(fmt, limiter.clone()));
        (Dispatch::new(sub), buf, limiter)
    }

    #[test]
    fn a_burst_is_cut_to_the_limit_and_the_rest_counted() {
        let clock = ManualClock::new();
        let (d, buf, _) = text(&clock);
        // One callsite for every event of this test.
        let emit = |i: u32| warn!(i, "peer reconnecting in a loop");
        tracing::dispatcher::with_default(&d, || (0..1000).for_each(emit));
        let lines = buf.lines();
        assert_eq!(lines.len(), MAX_EVENTS_PER_WINDOW as usize, "{lines:#?}");
        assert!(lines.iter().all(|l| l.contains("peer reconnecting")));
        // Still inside the window: nothing more, and no report yet.
        clock.advance(WINDOW - Duration::from_millis(1));
        tracing::dispatcher::with_default(&d, || emit(1000));
        assert_eq!(buf.lines().len(), MAX_EVENTS_PER_WINDOW as usize);
        clock.advance(Duration::from_millis(1));
        tracing::dispatcher::with_default(&d, || emit(1001));
        let lines = buf.lines();
        assert_eq!(
            lines.len(),
            MAX_EVENTS_PER_WINDOW as usize + 2,
            "{lines:#?}"
        );
        let report = &lines[MAX_EVENTS_PER_WINDOW as usize];
        assert!(report.contains("WARN"), "{report}");
        assert!(
            report.contains("suppressed 991 repeated log lines"),
            "{report}"
        );
        assert!(report.contains("suppressed=991"), "{report}");
        assert!(
            report.contains("callsite=\"node::log_limit::tests:"),
            "{report}"
        );
        assert!(lines[MAX_EVENTS_PER_WINDOW as usize + 1].contains("i=1001"));
    }

    #[test]
    fn callsites_are_limited_independently_and_info_never() {
        let clock = ManualClock::new();
        let (d, buf, _) = text(&clock);
        tracing::dispatcher::with_default(&d, || {
            for _ in 0..100 {
                warn!("first");
                tracing::error!("second");
                info!("third");
            }
        });
        let lines = buf.lines();
        let count = |s: &str| lines.iter().filter(|l| l.ends_with(s)).count();
        assert_eq!(count("first"), MAX_EVENTS_PER_WINDOW as usize);
        assert_eq!(count("second"), MAX_EVENTS_PER_WINDOW as usize);
        assert_eq!(count("third"), 100);
    }

    #[test]
    fn peers_are_limited_apart_and_together_and_the_map_stays_bounded() {
        let clock = ManualClock::new();
        let (d, buf, limiter) = text(&clock);
        tracing::dispatcher::with_default(&d, || {
            for _ in 0..50 {
                warn!(peer = "noisy", "bad frame");
            }
            warn!(peer = "quiet", "bad frame");
        });
        let lines = buf.lines();
        let noisy = lines
            .iter()
            .filter(|l| l.contains("peer=\"noisy\""))
            .count();
        assert_eq!(noisy, MAX_EVENTS_PER_WINDOW as usize);
        assert!(lines.last().unwrap().contains("peer=\"quiet\""));

        // 10,000 distinct peer values: one callsite plus at most MAX_PEER_KEYS pairs.
        let (d, buf, limiter2) = text(&clock);
        drop(limiter);
        let emit = |peer: u32| warn!(peer, "attacker minting ids");
        tracing::dispatcher::with_default(&d, || (0..10_000).for_each(emit));
        assert!(limiter2.tracked_keys() <= MAX_PEER_KEYS + 1);
        assert_eq!(limiter2.tracked_keys(), MAX_PEER_KEYS + 1);
        assert_eq!(buf.lines().len(), MAX_PEER_EVENTS_PER_WINDOW as usize);
        clock.advance(WINDOW);
        tracing::dispatcher::with_default(&d, || emit(1));
        let lines = buf.lines();
        let report = &lines[lines.len() - 2];
        let dropped = 10_000 - MAX_PEER_EVENTS_PER_WINDOW;
        assert!(
            report.contains(&format!("suppressed {dropped} repeated log lines")),
            "{report}"
        );
    }

    #[test]
    fn the_count_reaches_json_lines() {
        let clock = ManualClock::new();
        let buf = Buf::default();
        let limiter = Arc::new(Limiter::new(Limits::default(), clock.clock()));
        let json = crate::log_span::json_layer().with_writer(buf.clone());
        let d = Dispatch::new(
            tracing_subscriber::registry().with(RateLimited::with_limiter(json, limiter)),
        );
        let emit = || warn!(peer = "p", "flapping");
        tracing::dispatcher::with_default(&d, || (0..20).for_each(|_| emit()));
        clock.advance(WINDOW);
        tracing::dispatcher::with_default(&d, emit);
        let lines: Vec<serde_json::Value> = buf
            .lines()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), MAX_EVENTS_PER_WINDOW as usize + 2);
        let report = &lines[MAX_EVENTS_PER_WINDOW as usize]["fields"];
        assert_eq!(report["suppressed"], 10);
        assert_eq!(report["peer"], "p");
        assert_eq!(report["message"], "suppressed 10 repeated log lines");
    }
}
