//! `lab forward`: connections to the host's LISTEN carried byte for byte to TO inside a
//! lab namespace (the lab's console, reachable from the host's browser; TLS stays end
//! to end between the browser and the daemon). Each connection's far side is opened
//! from a thread that entered the namespace; at most `MAX_CONNS` at once.

use anyhow::{Context, Result};
use std::{
    fs::File,
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    path::Path,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

const MAX_CONNS: usize = 256;

pub fn run(listen: SocketAddr, ns: &str, to: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(listen).with_context(|| format!("listening on {listen}"))?;
    let nsfile = Arc::new(File::open(Path::new("/run/netns").join(ns)).with_context(|| format!("opening netns {ns}"))?);
    let open = Arc::new(AtomicUsize::new(0));
    eprintln!("forwarding {listen} to {to} in netns {ns}");
    for conn in listener.incoming() {
        let Ok(client) = conn else { continue };
        if open.load(Ordering::Relaxed) >= MAX_CONNS {
            continue;
        }
        let (nsfile, open) = (nsfile.clone(), open.clone());
        open.fetch_add(1, Ordering::Relaxed);
        std::thread::spawn(move || {
            // SAFETY: setns on this thread only, with a valid netns fd.
            if unsafe { libc::setns(nsfile.as_raw_fd(), libc::CLONE_NEWNET) } == 0 {
                if let Ok(server) = TcpStream::connect_timeout(&to, Duration::from_secs(3)) {
                    pipe(client, server);
                }
            }
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    Ok(())
}

/// Copy both ways until both sides are done.
fn pipe(a: TcpStream, b: TcpStream) {
    let (Ok(mut a2), Ok(mut b2)) = (a.try_clone(), b.try_clone()) else { return };
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut a2, &mut &b);
        let _ = b.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut b2, &mut &a);
    let _ = a.shutdown(Shutdown::Write);
    let _ = up.join();
}
