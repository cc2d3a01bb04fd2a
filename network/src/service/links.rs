//! Long-lived streams, one outbound stream per validator and kind, opened on first use and
//! reopened after a failure, carrying frames back to back as `u32` big-endian length ‖ bytes
//! (the framing of `/bftnode/consensus/1`):
//! * [`CONSENSUS_STREAM_PROTOCOL`]: small consensus frames (votes, timeouts, statuses, small
//!   proposals: below [`crate::MIN_SAMPLE_BYTES`]);
//! * [`TX_STREAM_PROTOCOL`]: every transaction batch pushed by its author (`service/txs.rs`).
//!
//! Why: a request-response frame costs a new QUIC stream, a protocol negotiation, a timeout
//! timer (on libp2p's shared `futures-timer` thread) and an acknowledgement stream back. At
//! 1,000 tx/s on 4 validators sharing 2 cores the chain runs about 280 views a second, every
//! one of them about 15 frames, and a node's profile showed 16 % of its samples in thread
//! switches, most of them waking that timer thread (issue 10). Frames of at least
//! `MIN_SAMPLE_BYTES` keep request-response: their acknowledgements feed [`crate::Goodput`],
//! and a large proposal on its own stream does not hold the small frames behind it.
//!
//! **Delivery** stays best effort, as for request-response: a frame whose stream fails is lost
//! (the core's resend timers and block sync recover), and small frames may overtake large ones.
//!
//! **Bounds** (nothing here grows with what a peer sends):
//! * outbound: at most [`QUEUE_FRAMES`] frames and [`QUEUE_BYTES`] bytes queued per validator
//!   and kind; beyond them a consensus frame falls back to request-response, whose in-flight
//!   caps apply, and a transaction batch is not sent to that validator (`send_dropped`);
//! * a stream open and its one-byte handshake wait at most [`OPEN_TIMEOUT`] per attempt
//!   ([`OPEN_ATTEMPTS`] attempts), a write at most [`WRITE_TIMEOUT`], then the
//!   stream is dropped and the queued frames with it;
//! * inbound: streams of validators only (the protocol is not offered to strangers,
//!   `gate.rs`; a stream of a non-validator reaching the service anyway is dropped and counted
//!   as `non_validator_dropped`), at most [`MAX_READERS_PER_PEER`] per validator (a new one
//!   and kind replaces the oldest: a reconnected peer's old stream may linger on our side); each
//!   frame is checked against its cap (`max_frame_bytes`, or `max_gossip_bytes` for
//!   transactions) before its body is read (an oversized one ends the stream and scores the
//!   peer, like an oversized request), then admitted as a request-response frame of its kind
//!   would be (token bucket; for transactions also the author's byte budget). The readers of a
//!   kind share one channel of [`INBOUND_FRAMES`] frames to the service (one per kind, so a
//!   consensus frame never waits behind transaction batches); a full channel stops the readers, and QUIC flow
//!   control then stops the senders.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream, StreamProtocol};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tracing::{debug, trace};

use super::unicast::Unicast;
use crate::codec::{Frame, read_request_frame, write_frame};
use crate::{CONSENSUS_STREAM_PROTOCOL, TX_STREAM_PROTOCOL};

/// Frames queued per validator and kind.
pub(super) const QUEUE_FRAMES: usize = 512;
/// Bytes queued per validator and kind (16 MiB, the request-response in-flight cap of
/// transaction batches).
pub(super) const QUEUE_BYTES: usize = 16 * 1024 * 1024;
/// Longest wait for a stream to open.
pub(super) const OPEN_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for one batch of frames to be written (the peer reads too slowly otherwise).
pub(super) const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Inbound streams read at once per validator.
pub(super) const MAX_READERS_PER_PEER: usize = 4;
/// Frames read off every stream and not yet taken by the service.
pub(super) const INBOUND_FRAMES: usize = 1024;

/// What the link tasks of one kind hand to the service.
pub(super) enum LinkEvent {
    /// A peer opened a stream to us (not yet known to be a validator's).
    Accepted(Unicast, PeerId, Stream),
    /// A frame read off a validator's stream, within its kind's cap.
    Frame(Unicast, PeerId, Vec<u8>),
    /// A validator announced a frame of `len` bytes, above the cap `max`; its stream ended.
    Oversized {
        /// The sender.
        peer: PeerId,
        /// Announced length, in bytes.
        len: usize,
        /// The cap, in bytes.
        max: usize,
    },
}

/// A writer task's queue: the frames, and their bytes (shared with the task, which subtracts
/// what it took).
struct Writer {
    tx: mpsc::Sender<Vec<u8>>,
    queued_bytes: Arc<AtomicUsize>,
}

/// The service's side of the links of one kind: per-validator writer queues and the reader
/// tasks.
pub(super) struct Links {
    kind: Unicast,
    protocol: StreamProtocol,
    control: libp2p_stream::Control,
    writers: HashMap<PeerId, Writer>,
    readers: HashMap<PeerId, VecDeque<AbortHandle>>,
    /// Every link task; dropping `Links` (the service ending) aborts them all.
    tasks: JoinSet<()>,
    /// Where the readers and the acceptor send.
    events_tx: mpsc::Sender<LinkEvent>,
    /// Batches lost to a failed open or write (a batch is one or more frames).
    write_failures: Arc<AtomicU64>,
}

/// A channel for the [`LinkEvent`]s of one kind's link tasks; [`INBOUND_FRAMES`] deep.
pub(super) fn events_channel() -> (mpsc::Sender<LinkEvent>, mpsc::Receiver<LinkEvent>) {
    mpsc::channel(INBOUND_FRAMES)
}

impl Links {
    /// Starts accepting the `kind`'s stream protocol on `control`; events go to `events_tx`
    /// ([`events_channel`]). Must run inside a tokio runtime. Fails only if the protocol is
    /// already accepted on this behaviour.
    pub(super) fn start(
        kind: Unicast,
        mut control: libp2p_stream::Control,
        events_tx: mpsc::Sender<LinkEvent>,
    ) -> Result<Self, libp2p_stream::AlreadyRegistered> {
        let protocol = StreamProtocol::new(match kind {
            Unicast::Consensus => CONSENSUS_STREAM_PROTOCOL,
            Unicast::Txs => TX_STREAM_PROTOCOL,
        });
        let mut incoming = control.accept(protocol.clone())?;
        let mut tasks = JoinSet::new();
        let tx = events_tx.clone();
        tasks.spawn(async move {
            while let Some((peer, stream)) = incoming.next().await {
                if tx
                    .send(LinkEvent::Accepted(kind, peer, stream))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Ok(Links {
            kind,
            protocol,
            control,
            writers: HashMap::new(),
            readers: HashMap::new(),
            tasks,
            events_tx,
            write_failures: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Queues `bytes` on `peer`'s stream, starting its writer on first use. Gives the frame
    /// back if the queue is full ([`QUEUE_FRAMES`], [`QUEUE_BYTES`]).
    pub(super) fn send(&mut self, peer: PeerId, bytes: Vec<u8>) -> Result<(), Vec<u8>> {
        let w = self.writers.entry(peer).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(QUEUE_FRAMES);
            let queued_bytes = Arc::new(AtomicUsize::new(0));
            let writer = WriteLoop {
                control: self.control.clone(),
                protocol: self.protocol.clone(),
                peer,
                rx,
                queued_bytes: queued_bytes.clone(),
                failures: self.write_failures.clone(),
            };
            self.tasks.spawn(writer.run());
            Writer { tx, queued_bytes }
        });
        let len = bytes.len();
        if w.queued_bytes.load(Ordering::Relaxed) + len > QUEUE_BYTES {
            return Err(bytes);
        }
        // Counted before the writer can take (and uncount) it, so the count never wraps.
        w.queued_bytes.fetch_add(len, Ordering::Relaxed);
        w.tx.try_send(bytes).map_err(|e| {
            w.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            match e {
                mpsc::error::TrySendError::Full(b) | mpsc::error::TrySendError::Closed(b) => b,
            }
        })
    }

    /// Reads frames of at most `max` bytes off `stream`, opened to us by validator `peer`,
    /// replacing its oldest reader beyond [`MAX_READERS_PER_PEER`].
    pub(super) fn read(&mut self, peer: PeerId, stream: Stream, max: usize) {
        let handle = self.tasks.spawn(read_loop(
            self.kind,
            peer,
            stream,
            max,
            self.events_tx.clone(),
        ));
        let readers = self.readers.entry(peer).or_default();
        readers.retain(|h| !h.is_finished());
        readers.push_back(handle);
        while readers.len() > MAX_READERS_PER_PEER {
            if let Some(oldest) = readers.pop_front() {
                oldest.abort();
            }
        }
    }

    /// Batches lost to a failed stream open or write since start.
    pub(super) fn write_failures(&self) -> u64 {
        self.write_failures.load(Ordering::Relaxed)
    }
}

impl super::Service {
    /// An event of the link tasks: an accepted stream is read if a validator opened it (else
    /// dropped and counted); a frame is admitted and delivered like a request-response frame
    /// of its kind; an oversized announcement scores its sender.
    pub(super) fn on_link(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Accepted(kind, peer, stream) => {
                if !self.by_peer.contains_key(&peer) {
                    self.metrics.non_validator_dropped += 1;
                    trace!(%peer, ?kind, "stream of a non-validator dropped");
                    return;
                }
                let (links, max) = match kind {
                    Unicast::Consensus => (&mut self.links, self.cfg.max_frame_bytes),
                    Unicast::Txs => (&mut self.tx_links, self.cfg.max_gossip_bytes),
                };
                links.read(peer, stream, max);
            }
            LinkEvent::Frame(Unicast::Consensus, peer, bytes) => {
                if let Some(from) = self.admit(&peer, bytes.len()) {
                    self.metrics.frames_in += 1;
                    self.metrics.stream_frames_in += 1;
                    self.emit(crate::NetworkEvent::Consensus { from, bytes });
                }
            }
            LinkEvent::Frame(Unicast::Txs, peer, bytes) => {
                if self.admit_txs(&peer, bytes.len()) {
                    self.metrics.gossip_in += 1;
                    self.emit(crate::NetworkEvent::Gossip {
                        topic: crate::Topic::Transactions,
                        from: peer,
                        bytes,
                    });
                }
            }
            LinkEvent::Oversized { peer, len, max } => self.on_oversized(peer, len, max),
        }
    }
}

/// Most bytes written between two waits for the next queued frame.
const BATCH_BYTES: usize = 256 * 1024;

/// The writer of one validator's stream: takes every queued frame (up to [`BATCH_BYTES`]),
/// opens the stream if needed, writes the frames and flushes. A failed write drops the stream
/// and is tried once more on a new one; a failed open, a second failure or a timed-out write
/// drops the batch (counted in `failures`).
struct WriteLoop {
    control: libp2p_stream::Control,
    protocol: StreamProtocol,
    peer: PeerId,
    rx: mpsc::Receiver<Vec<u8>>,
    /// Bytes in `rx`, shared with [`Links::send`].
    queued_bytes: Arc<AtomicUsize>,
    failures: Arc<AtomicU64>,
}

impl WriteLoop {
    async fn run(mut self) {
        let peer = self.peer;
        let mut stream: Option<Stream> = None;
        let mut batch: Vec<Vec<u8>> = Vec::new();
        while let Some(first) = self.rx.recv().await {
            batch.clear();
            let mut bytes = first.len();
            batch.push(first);
            while bytes < BATCH_BYTES {
                match self.rx.try_recv() {
                    Ok(f) => {
                        bytes += f.len();
                        batch.push(f);
                    }
                    Err(_) => break,
                }
            }
            self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            // A stream broken while idle (the peer restarted, the connection was replaced)
            // fails at its next write: the batch is then written once more, on a new stream.
            // A timed-out write is not retried (the peer reads too slowly).
            for attempt in 0..2 {
                if stream.is_none() {
                    stream = open(&mut self.control, &self.protocol, peer).await;
                }
                let Some(s) = stream.as_mut() else {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    break;
                };
                let write = async {
                    for f in &batch {
                        write_frame(s, f).await?;
                    }
                    s.flush().await
                };
                match tokio::time::timeout(WRITE_TIMEOUT, write).await {
                    Ok(Ok(())) => break,
                    outcome => {
                        trace!(%peer, attempt, timed_out = outcome.is_err(), "stream write failed");
                        stream = None;
                        if attempt == 1 || outcome.is_err() {
                            self.failures.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// The byte a reader writes on a stream it accepted, before reading frames off it.
const READY: u8 = 1;
/// Attempts to open a stream for one batch before it is dropped.
const OPEN_ATTEMPTS: u32 = 3;
/// Pause after a failed open attempt, doubled at each further attempt.
const OPEN_BACKOFF: Duration = Duration::from_millis(20);

/// Opens a stream to `peer` and waits for its reader's [`READY`] byte, each step within
/// [`OPEN_TIMEOUT`], up to [`OPEN_ATTEMPTS`] times. The handshake costs one round trip per
/// stream, not per frame, and makes sure a reader holds the stream: negotiation is lazy, and
/// libp2p-stream drops an inbound stream when the acceptor has not taken the previous one
/// yet (several peers opening at once), so without it the first batch on a dropped stream
/// would be lost unnoticed.
async fn open(
    control: &mut libp2p_stream::Control,
    protocol: &StreamProtocol,
    peer: PeerId,
) -> Option<Stream> {
    let mut backoff = OPEN_BACKOFF;
    for attempt in 1..=OPEN_ATTEMPTS {
        let handshake = async {
            let mut s = control
                .open_stream(peer, protocol.clone())
                .await
                .map_err(|e| e.to_string())?;
            let mut ready = [0u8; 1];
            s.read_exact(&mut ready).await.map_err(|e| e.to_string())?;
            if ready[0] == READY {
                Ok(s)
            } else {
                Err(format!("unexpected handshake byte {}", ready[0]))
            }
        };
        match tokio::time::timeout(OPEN_TIMEOUT, handshake).await {
            Ok(Ok(s)) => return Some(s),
            Ok(Err(e)) => debug!(%peer, %protocol, attempt, error = %e, "stream not opened"),
            Err(_) => debug!(%peer, %protocol, attempt, "stream open timed out"),
        }
        if attempt < OPEN_ATTEMPTS {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    None
}

/// The reader of one inbound stream: writes the [`READY`] byte, then forwards each frame to
/// the service until the stream ends, fails or announces a frame above `max`.
async fn read_loop(
    kind: Unicast,
    peer: PeerId,
    mut stream: Stream,
    max: usize,
    tx: mpsc::Sender<LinkEvent>,
) {
    let ready = async {
        stream.write_all(&[READY]).await?;
        stream.flush().await
    };
    if let Err(e) = ready.await {
        trace!(%peer, error = %e, "stream ended before the handshake");
        return;
    }
    loop {
        let event = match read_request_frame(&mut stream, max).await {
            Ok(Frame::Data(bytes)) => LinkEvent::Frame(kind, peer, bytes),
            Ok(Frame::Oversized { len, max }) => {
                let _ = tx.send(LinkEvent::Oversized { peer, len, max }).await;
                return;
            }
            Err(e) => {
                trace!(%peer, error = %e, "consensus stream ended");
                return;
            }
        };
        if tx.send(event).await.is_err() {
            return;
        }
    }
}
