//! The flows of the nodes whose buddy this node is, into its standby table. A
//! connection is taken only from a node of the recorded fleet, from the address that
//! node registered for replication (its `--replication-listen`), under that node's
//! name; anything else is refused and counted. Each frame is applied (`copies`, which
//! checks every event) and acknowledged; a stream that breaks the protocol is closed
//! (the sender starts over). A node's copies are dropped when it leaves the recorded
//! fleet, or when, up, it has not streamed here for `ORPHANED` (it has another buddy).

use super::{
    copies::Copies,
    wire::{self, Frame},
    Shared,
};
use crate::{
    daemon::picture::Shown,
    dataplane::replica::Standby,
    model::{buddy, fleet},
};
use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{atomic::Ordering::Relaxed, Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::net::{TcpListener, TcpStream};

const HELLO_TIMEOUT: Duration = Duration::from_secs(3);
/// A node streaming to another buddy this long loses its copies here.
const ORPHANED: Duration = Duration::from_secs(30);

struct Held {
    copies: Copies,
    standby: Standby,
    /// The connection each origin streams on (a newer one supersedes), and when each
    /// was last heard.
    streams: HashMap<String, (u64, Instant)>,
    next_stream: u64,
}

/// Accept replication streams on `listen` until the daemon stops.
pub async fn serve(repl: Shared, shown: Shown, me: String, listen: SocketAddr) {
    let listener = match TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(address = %listen, error = %e, "replication: cannot listen (no flows can be held for other nodes)");
            return;
        }
    };
    let (standby, limit) = loop {
        if let Some(x) = repl.take_standby() {
            break x;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let held = Arc::new(Mutex::new(Held { copies: Copies::new(limit), standby, streams: HashMap::new(), next_stream: 0 }));
    let mut tidy = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let (repl, shown, held, me) = (repl.clone(), shown.clone(), held.clone(), me.clone());
                tokio::spawn(async move {
                    if let Err(e) = stream_from(stream, peer, &repl, &shown, &held, &me).await {
                        tracing::warn!(peer = %peer, error = %format!("{e:#}"), "replication: stream closed");
                    }
                });
            }
            _ = tidy.tick() => tidy_up(&repl, &shown, &held, &me),
        }
    }
}

async fn stream_from(stream: TcpStream, peer: SocketAddr, repl: &Shared, shown: &Shown, held: &Arc<Mutex<Held>>, me: &str) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let (mut r, mut w) = stream.into_split();
    let (node, run) = match tokio::time::timeout(HELLO_TIMEOUT, wire::read(&mut r)).await {
        Ok(Ok(Some(Frame::Hello { node, run }))) => (node, run),
        Ok(Ok(other)) => {
            repl.peers_refused.fetch_add(1, Relaxed);
            anyhow::bail!("refused: opened with {other:?} instead of hello");
        }
        Ok(Err(e)) => {
            repl.peers_refused.fetch_add(1, Relaxed);
            anyhow::bail!("refused: {e}");
        }
        Err(_) => {
            repl.peers_refused.fetch_add(1, Relaxed);
            anyhow::bail!("refused: no hello in {HELLO_TIMEOUT:?}");
        }
    };
    if let Err(why) = admit(shown, &node, me, peer).await {
        repl.peers_refused.fetch_add(1, Relaxed);
        anyhow::bail!("refused {node}: {why}");
    }
    let (id, applied) = {
        let mut h = held.lock().unwrap();
        h.next_stream += 1;
        let id = h.next_stream;
        h.streams.insert(node.clone(), (id, Instant::now()));
        (id, h.copies.welcome(&node, run))
    };
    tracing::info!(node = %node, peer = %peer, applied, "replication: holding the flows of a node");
    wire::write(&mut w, &Frame::Welcome { applied }).await?;
    loop {
        let Some(frame) = wire::read(&mut r).await? else { return Ok(()) };
        let pic = shown.now();
        let Some(slice) = pic.state.nodes.get(&node).map(|n| n.slice) else { anyhow::bail!("{node} left the fleet") };
        // Its own slice, and those it has taken over (the flows it adopted are its own).
        let mut ranges = fleet::snat_slice_ranges(&pic.state, slice);
        for dead in buddy::taken_over_by(&pic.state, &node) {
            ranges.extend(fleet::snat_slice_ranges(&pic.state, pic.state.nodes[&dead].slice));
        }
        let applied = tokio::task::block_in_place(|| {
            let mut h = held.lock().unwrap();
            if h.streams.get(&node).map(|s| s.0) != Some(id) {
                return Err(anyhow::anyhow!("superseded by a newer stream from {node}"));
            }
            h.streams.insert(node.clone(), (id, Instant::now()));
            let Held { copies, standby, .. } = &mut *h;
            let a = copies.apply(&node, frame, &ranges, standby)?;
            *repl.held.lock().unwrap() = copies.held();
            Ok(a)
        })?;
        repl.batches_applied.fetch_add(1, Relaxed);
        if applied.refused > 0 {
            repl.events_refused.fetch_add(applied.refused, Relaxed);
            tracing::warn!(node = %node, refused = applied.refused, "replication: flow events refused (inconsistent, outside the node's SNAT slice, or over the standby table's size)");
        }
        wire::write(&mut w, &Frame::Ack { seq: applied.ack }).await?;
    }
}

/// Whether `node` may stream from `peer`: another node of the recorded fleet whose
/// registration names `peer`'s address for replication.
async fn admit(shown: &Shown, node: &str, me: &str, peer: SocketAddr) -> Result<(), String> {
    let pic = shown.now();
    if node == me {
        return Err("it has this node's name".into());
    }
    if !pic.state.nodes.contains_key(node) {
        return Err("no such node in the fleet".into());
    }
    let store = pic.store.clone();
    let beats = tokio::task::spawn_blocking(move || store.beats()).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
    match beats.iter().find(|b| b.name == node).and_then(|b| b.replication) {
        Some(a) if a.ip() == peer.ip() => Ok(()),
        Some(a) => Err(format!("it registered {} for replication, not {}", a.ip(), peer.ip())),
        None => Err("it has registered no replication address".into()),
    }
}

/// Drop the copies of nodes gone from the fleet, and of nodes up that stream to
/// another buddy now.
fn tidy_up(repl: &Shared, shown: &Shown, held: &Arc<Mutex<Held>>, me: &str) {
    let pic = shown.now();
    let mut h = held.lock().unwrap();
    let Held { copies, standby, streams, .. } = &mut *h;
    for node in copies.origins() {
        let recorded = pic.state.nodes.get(&node);
        let quiet = streams.get(&node).is_none_or(|(_, at)| at.elapsed() > ORPHANED);
        let elsewhere = recorded.is_some_and(|r| r.up) && buddy::buddy_of(&pic.state, &node).as_deref() != Some(me);
        if recorded.is_none() || (elsewhere && quiet) {
            let n = copies.drop_origin(&node, standby);
            streams.remove(&node);
            tracing::info!(node = %node, flows = n, "replication: dropped the flows held for a node (it left the fleet or has another buddy)");
        }
    }
    *repl.held.lock().unwrap() = copies.held();
}
