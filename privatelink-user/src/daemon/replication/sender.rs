//! This node's flows to its buddy. Events from the data path's ring are batched (what
//! the ring holds when it wakes the task, up to `wire::MAX_BATCH` a batch), numbered
//! and kept until the buddy acknowledges them;
//! after a reconnect the buddy says what it applied and the rest is sent again, or,
//! when that is no longer here (a new buddy, a new run, too much unacknowledged), a
//! snapshot of the flow table starts the stream over. The buddy is found each second
//! from the recorded state (`model::buddy`) and the nodes' registrations (its
//! `--replication-listen` address); alone, replication is off.

use super::{wire::{self, Frame}, Shared};
use crate::{
    daemon::picture::Shown,
    dataplane::{maps::Reader, monotonic_ns, replica::{self, FlowEvents}},
    model::buddy,
};
use privatelink_common::FlowEvent;
use std::{
    collections::VecDeque,
    net::SocketAddr,
    os::fd::{AsRawFd, RawFd},
    sync::{atomic::Ordering::Relaxed, Arc},
    time::Duration,
};
use tokio::{io::unix::AsyncFd, net::TcpSocket, sync::mpsc};

/// Frames kept unacknowledged at most (then a snapshot replaces them).
const MAX_UNACKED: usize = 8192;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A buddy that takes longer than this to take a frame is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(3);

struct Ring(FlowEvents);

impl AsRawFd for Ring {
    fn as_raw_fd(&self) -> RawFd {
        self.0.ring.as_raw_fd()
    }
}

/// Numbered frames not yet acknowledged, and how far they were sent.
#[derive(Default)]
struct Outbox {
    frames: VecDeque<(Frame, u64)>,
    next: u64,
    /// Frames up to this number were written on the current connection.
    sent: u64,
    /// A snapshot must start the stream over.
    need_snapshot: bool,
}

impl Outbox {
    fn push(&mut self, f: impl FnOnce(u64) -> Frame, oldest_ns: u64) {
        self.next += 1;
        self.frames.push_back((f(self.next), oldest_ns));
        if self.frames.len() > MAX_UNACKED {
            self.frames.clear();
            self.need_snapshot = true;
        }
    }

    fn first(&self) -> u64 {
        self.frames.front().and_then(|(f, _)| f.seq()).unwrap_or(self.next + 1)
    }
}

/// Replicate this node's flows to its buddy until the daemon stops.
pub async fn send(repl: Shared, shown: Shown, me: String, listen: SocketAddr) {
    let (events, reader) = loop {
        if let Some(x) = repl.take_events() {
            break x;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let reader = Arc::new(reader);
    // SAFETY: the ring's descriptor is owned by `Ring`, which the AsyncFd owns: it is
    // closed only when the AsyncFd (deregistered first) drops it.
    let Ok(mut ring) = (unsafe { AsyncFd::register(Ring(events)) }) else {
        tracing::error!("replication: the flow events' ring cannot be polled");
        return;
    };
    let run = crate::model::time::unix_now_ms() ^ (std::process::id() as u64) << 40;
    let mut out = Outbox { need_snapshot: true, ..Default::default() };
    let mut conn: Option<(tokio::net::tcp::OwnedWriteHalf, mpsc::Receiver<u64>, String)> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut on = false;
    loop {
        tokio::select! {
            ready = ring.readable_mut() => {
                // What the ring holds goes at once, in batches: under load a wake-up
                // finds many events, so batching needs no wait (a wait here delayed
                // the acknowledgements read by this same loop: 10 ms of lag at 1,000
                // connections a second).
                let Ok(mut guard) = ready else { return };
                let got = drain(&mut guard.get_inner_mut().0);
                guard.clear_ready();
                if on {
                    queue(&mut out, got);
                }
            }
            ack = async { match &mut conn { Some((_, acks, _)) => acks.recv().await, None => std::future::pending().await } } => {
                match ack {
                    Some(seq) => acknowledged(&repl, &mut out, seq),
                    None => {
                        tracing::warn!("replication: the buddy closed the stream");
                        conn = None;
                    }
                }
            }
            _ = tick.tick() => {
                let target = find_buddy(&shown, &me).await;
                *repl.buddy.lock().unwrap() = target.as_ref().map(|(n, _)| n.clone());
                let want = target.is_some();
                if want != on {
                    on = want;
                    if let Err(e) = ring.get_mut().0.switch(on) {
                        tracing::warn!(error = %e, "replication: switching flow events");
                    }
                    if !on {
                        out = Outbox { need_snapshot: true, ..Default::default() };
                    }
                }
                if let Ok(lost) = ring.get_ref().0.lost() {
                    repl.events_lost.store(lost, Relaxed);
                }
                match (&conn, &target) {
                    (Some((_, _, name)), Some((want, _))) if name == want => {}
                    (_, None) => conn = None,
                    (_, Some((name, addr))) => {
                        conn = None;
                        match connect(&me, run, *addr, listen).await {
                            Ok((w, acks, applied)) => {
                                tracing::info!(buddy = %name, address = %addr, applied, "replication: streaming flows to the buddy");
                                resume(&repl, &mut out, applied);
                                conn = Some((w, acks, name.clone()));
                            }
                            Err(e) => tracing::warn!(buddy = %name, address = %addr, error = %format!("{e:#}"), "replication: cannot reach the buddy"),
                        }
                    }
                }
            }
        }
        if out.need_snapshot && on && conn.is_some() {
            out.need_snapshot = false;
            snapshot(&repl, &mut out, reader.clone()).await;
        }
        let mut broken = false;
        if let Some((w, _, _)) = &mut conn {
            broken = flush(&repl, &mut out, w).await.is_err();
        }
        if broken {
            tracing::warn!("replication: writing to the buddy failed");
            conn = None;
        }
        repl.connected.store(conn.is_some(), Relaxed);
        repl.unacked.store(out.frames.len() as u64, Relaxed);
    }
}

fn drain(events: &mut FlowEvents) -> Vec<FlowEvent> {
    let mut got = Vec::new();
    while let Some(e) = events.next_event() {
        got.extend(e);
    }
    got
}

fn queue(out: &mut Outbox, events: Vec<FlowEvent>) {
    for chunk in events.chunks(wire::MAX_BATCH) {
        let oldest = chunk.iter().map(|e| e.at_ns).min().unwrap_or(0);
        let events = chunk.to_vec();
        out.push(|seq| Frame::Batch { seq, events }, oldest);
    }
}

/// A snapshot of the flow table starts the stream over (what was unacknowledged is
/// in it: older events go).
async fn snapshot(repl: &Shared, out: &mut Outbox, reader: Arc<Reader>) {
    let taken = tokio::task::spawn_blocking(move || replica::snapshot(&reader, monotonic_ns())).await;
    let flows = match taken {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "replication: reading the flow table for a snapshot");
            out.need_snapshot = true;
            return;
        }
        Err(_) => return,
    };
    out.frames.clear();
    out.sent = out.next;
    out.push(|seq| Frame::Begin { seq }, 0);
    for chunk in flows.chunks(wire::MAX_BATCH) {
        let events = chunk.to_vec();
        out.push(|seq| Frame::Batch { seq, events }, 0);
    }
    out.push(|seq| Frame::End { seq }, 0);
    repl.snapshots.fetch_add(1, Relaxed);
}

/// The buddy applied up to `applied`: send what follows again, or start over.
fn resume(repl: &Shared, out: &mut Outbox, applied: u64) {
    if applied == 0 || applied + 1 < out.first() || applied > out.next {
        out.need_snapshot = true;
        out.sent = out.next;
        return;
    }
    out.frames.retain(|(f, _)| f.seq().is_some_and(|s| s > applied));
    let again = out.sent.saturating_sub(applied);
    repl.frames_resent.fetch_add(again, Relaxed);
    out.sent = applied;
}

fn acknowledged(repl: &Shared, out: &mut Outbox, seq: u64) {
    let now = monotonic_ns();
    while let Some((f, oldest)) = out.frames.front() {
        if f.seq().is_none_or(|s| s > seq) {
            break;
        }
        if matches!(f, Frame::Batch { .. }) && *oldest != 0 {
            repl.lag(now.saturating_sub(*oldest));
        }
        out.frames.pop_front();
    }
}

/// Write every frame not yet written on this connection.
async fn flush(repl: &Shared, out: &mut Outbox, w: &mut tokio::net::tcp::OwnedWriteHalf) -> Result<(), wire::WireError> {
    for (f, oldest) in out.frames.iter() {
        let seq = f.seq().unwrap_or(0);
        if seq <= out.sent {
            continue;
        }
        let bytes = f.encode();
        match tokio::time::timeout(WRITE_TIMEOUT, tokio::io::AsyncWriteExt::write_all(w, &bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(wire::WireError::Io(e.to_string())),
            Err(_) => return Err(wire::WireError::Io("the buddy takes no more".into())),
        }
        out.sent = seq;
        repl.bytes_sent.fetch_add(bytes.len() as u64, Relaxed);
        if let Frame::Batch { events, .. } = f {
            repl.batches_sent.fetch_add(1, Relaxed);
            if *oldest != 0 {
                repl.events_sent.fetch_add(events.len() as u64, Relaxed);
            }
        }
    }
    Ok(())
}

/// This node's buddy and its replication address, if it has registered one.
async fn find_buddy(shown: &Shown, me: &str) -> Option<(String, SocketAddr)> {
    let pic = shown.now();
    if !pic.store.shared() {
        return None;
    }
    let name = buddy::buddy_of(&pic.state, me)?;
    let store = pic.store.clone();
    let beats = tokio::task::spawn_blocking(move || store.beats()).await.ok()?.ok()?;
    let addr = beats.into_iter().find(|b| b.name == name)?.replication?;
    Some((name, addr))
}

/// Open the stream from `listen`'s address: say hello, hear what the buddy applied.
async fn connect(me: &str, run: u64, to: SocketAddr, listen: SocketAddr) -> anyhow::Result<(tokio::net::tcp::OwnedWriteHalf, mpsc::Receiver<u64>, u64)> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(listen.ip(), 0))?;
    socket.set_nodelay(true)?;
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(to)).await.map_err(|_| anyhow::anyhow!("no answer in {CONNECT_TIMEOUT:?}"))??;
    let (mut r, mut w) = stream.into_split();
    wire::write(&mut w, &Frame::Hello { node: me.to_string(), run }).await?;
    let applied = match tokio::time::timeout(CONNECT_TIMEOUT * 3, wire::read(&mut r)).await {
        Ok(Ok(Some(Frame::Welcome { applied }))) => applied,
        Ok(Ok(other)) => anyhow::bail!("the buddy answered {other:?} (refused: is this node registered with this address?)"),
        Ok(Err(e)) => anyhow::bail!("{e}"),
        Err(_) => anyhow::bail!("no welcome"),
    };
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        while let Ok(Some(Frame::Ack { seq })) = wire::read(&mut r).await {
            if tx.send(seq).await.is_err() {
                return;
            }
        }
    });
    Ok((w, rx, applied))
}
