//! The announce keeper: a small process (`privatelink announce-keeper`, started by the
//! daemon) that holds the `pl-announce` device open, so the routes through it outlive
//! a daemon restart, and withdraws them itself when no daemon beats any more. It never
//! adds a route (the daemon does); it only deletes them all, one by one, and exits.
//!
//! The daemon connects to its socket and writes a line a second from its writer's
//! periodic work: `beat GRACE_MS IF,IF...` (the interfaces carrying the data path).
//! The keeper withdraws when:
//! - no beat came for GRACE_MS (a daemon stopped and not back, crashed, or wedged:
//!   connected or not, a daemon that does not beat is not there);
//! - while no daemon beats, an interface of the last beat lost its XDP program or
//!   vanished (the data path is gone; a daemon would stop announcing it);
//! - a daemon says `withdraw` (`privatelink down`, no announce table any more); the
//!   keeper answers `withdrawn` once the routes are deleted.
//!
//! Routes are deleted one by one rather than left to the device's removal: the kernel
//! flushes a removed device's routes without telling routing daemons, and FRR 8.4
//! keeps announcing a route imported from a table when its device went away.

use super::{fail, kernel_routes, run_batch, DEVICE};
use crate::dataplane::{netlink, Result};
use std::{
    io::{ErrorKind, Read, Write},
    os::unix::net::{UnixListener, UnixStream},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

/// How often the keeper looks at its connections and the clock.
const POLL: Duration = Duration::from_millis(100);
/// A beat's longest line: bounds what a connection may make the keeper hold.
const MAX_LINE: usize = 4096;

/// What one beat said.
#[derive(Debug, PartialEq)]
pub(super) enum Said {
    Beat { grace: Duration, interfaces: Vec<String> },
    Withdraw,
}

/// Parse one line a daemon wrote; None for anything else (a later version's words are
/// ignored, not obeyed).
pub(super) fn parse(line: &str) -> Option<Said> {
    let mut words = line.split_whitespace();
    match words.next()? {
        "beat" => {
            let ms: u64 = words.next()?.parse().ok()?;
            let interfaces = words.next().map(|l| l.split(',').filter(|i| !i.is_empty()).map(String::from).collect()).unwrap_or_default();
            Some(Said::Beat { grace: Duration::from_millis(ms.clamp(1000, 3_600_000)), interfaces })
        }
        "withdraw" => Some(Said::Withdraw),
        _ => None,
    }
}

struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
}

/// Run the keeper: create the device, listen on `socket`, hold until one of the
/// reasons above. `grace` holds until the first beat.
pub fn run(socket: &Path, grace: Duration) -> Result<()> {
    let _tun = super::open_device()?;
    if socket.exists() {
        std::fs::remove_file(socket).map_err(|e| fail(format!("removing the stale socket {}: {e}", socket.display())))?;
    }
    let listener = UnixListener::bind(socket).map_err(|e| fail(format!("listening on {}: {e}", socket.display())))?;
    listener.set_nonblocking(true).map_err(|e| fail(e.to_string()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600)).map_err(|e| fail(e.to_string()))?;
    let why = hold(&listener, grace);
    let withdrawn = withdraw_all();
    // Whoever asked hears the routes are gone (and from the socket's removal, that
    // this keeper is).
    std::fs::remove_file(socket).ok();
    match &withdrawn {
        Ok(n) => eprintln!("privatelink announce-keeper: {why}: {n} route(s) withdrawn"),
        Err(e) => eprintln!("privatelink announce-keeper: {why}: withdrawing: {e}"),
    }
    if let Some(mut asker) = why.asker {
        let _ = asker.write_all(if withdrawn.is_ok() { b"withdrawn\n" } else { b"failed\n" });
    }
    withdrawn.map(|_| ())
}

/// Why the keeper stops holding (and who asked, to be answered).
struct Why {
    text: String,
    asker: Option<UnixStream>,
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn hold(listener: &UnixListener, mut grace: Duration) -> Why {
    let mut conns: Vec<Conn> = Vec::new();
    let mut last_beat = Instant::now();
    let mut interfaces: Vec<String> = Vec::new();
    let mut last_look = Instant::now();
    loop {
        while let Ok((stream, _)) = listener.accept() {
            if stream.set_nonblocking(true).is_ok() {
                conns.push(Conn { stream, buf: Vec::new() });
            }
        }
        let mut i = 0;
        while i < conns.len() {
            let (lines, open) = read_lines(&mut conns[i]);
            for line in lines {
                match parse(&line) {
                    Some(Said::Beat { grace: g, interfaces: ifs }) => {
                        (last_beat, grace, interfaces) = (Instant::now(), g, ifs);
                    }
                    Some(Said::Withdraw) => {
                        let asker = conns.swap_remove(i).stream;
                        return Why { text: "the daemon withdrew".into(), asker: Some(asker) };
                    }
                    None => {}
                }
            }
            if open {
                i += 1;
            } else {
                conns.swap_remove(i);
            }
        }
        let silent = last_beat.elapsed();
        if silent > grace {
            return Why { text: format!("no daemon for {} s (the restart grace)", grace.as_secs()), asker: None };
        }
        // A beating daemon watches its own interfaces; the keeper does while none beats.
        if silent > Duration::from_millis(1500) && last_look.elapsed() >= Duration::from_secs(1) {
            last_look = Instant::now();
            if let Some(gone) = interfaces.iter().find(|i| !xdp_attached(i)) {
                return Why { text: format!("no daemon, and {gone} lost its data path"), asker: None };
            }
        }
        std::thread::sleep(POLL);
    }
}

/// The complete lines a connection has sent, and whether it is still open. A line
/// longer than `MAX_LINE` closes it.
fn read_lines(c: &mut Conn) -> (Vec<String>, bool) {
    let mut chunk = [0u8; 1024];
    let mut open = true;
    loop {
        match c.stream.read(&mut chunk) {
            Ok(0) => {
                open = false;
                break;
            }
            Ok(n) => c.buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                open = false;
                break;
            }
        }
    }
    let mut lines = Vec::new();
    while let Some(end) = c.buf.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = c.buf.drain(..=end).collect();
        lines.push(String::from_utf8_lossy(&line).trim().to_string());
    }
    if c.buf.len() > MAX_LINE {
        open = false;
    }
    (lines, open)
}

/// Whether interface `name` exists and has an XDP program attached (netlink, as the
/// daemon's own checks ask).
fn xdp_attached(name: &str) -> bool {
    let Ok(index) = crate::dataplane::loader::ifindex(name) else { return false };
    // Unable to tell: keep holding (the grace still ends it).
    netlink::link(index, None).map_or(true, |l| l.xdp != netlink::Attached::None)
}

/// Delete every route through the device; how many there were.
fn withdraw_all() -> Result<usize> {
    let routes = kernel_routes()?;
    let batch: String = routes.iter().map(|(table, ip, len)| format!("route del {ip}/{len} dev {DEVICE} table {table}\n")).collect();
    if !batch.is_empty() {
        run_batch(&batch)?;
    }
    Ok(routes.len())
}

/// The keeper of the daemon whose API socket is `daemon_socket` listens beside it.
pub fn socket_of(daemon_socket: &Path) -> std::path::PathBuf {
    let mut name = daemon_socket.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".announce");
    daemon_socket.with_file_name(name)
}

/// Start a keeper for `daemon_socket` (this same program, in its own session so a
/// signal to the daemon's process group does not reach it), and wait until it listens.
pub fn spawn(daemon_socket: &Path, grace: Duration) -> Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().map_err(|e| fail(format!("finding this program to start the announce keeper: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--socket").arg(daemon_socket).arg("announce-keeper").arg("--grace-ms").arg(grace.as_millis().to_string());
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
    // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| fail(format!("starting the announce keeper: {e}")))?;
    let socket = socket_of(daemon_socket);
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().map_err(|e| fail(e.to_string()))? {
            return Err(fail(format!("the announce keeper exited at once ({status}); its reason is logged above")));
        }
        if UnixStream::connect(&socket).is_ok() {
            return Ok(child);
        }
        if start.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!("the announce keeper did not listen on {} within 5 s", socket.display())));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_are_read_and_strangers_ignored() {
        assert_eq!(parse("beat 10000 gw-c0,gw-prov"), Some(Said::Beat { grace: Duration::from_secs(10), interfaces: vec!["gw-c0".into(), "gw-prov".into()] }));
        assert_eq!(parse("beat 5000"), Some(Said::Beat { grace: Duration::from_secs(5), interfaces: vec![] }));
        // A grace outside 1 s..1 h is held to it.
        assert_eq!(parse("beat 0 a"), Some(Said::Beat { grace: Duration::from_secs(1), interfaces: vec!["a".into()] }));
        assert_eq!(parse("beat 99999999999 a"), Some(Said::Beat { grace: Duration::from_secs(3600), interfaces: vec!["a".into()] }));
        assert_eq!(parse("withdraw"), Some(Said::Withdraw));
        for other in ["", "beat", "beat x", "withdrawn", "BEAT 1", "hold 1000"] {
            assert_eq!(parse(other), None, "{other:?}");
        }
        assert_eq!(socket_of(Path::new("/run/privatelink.sock")), Path::new("/run/privatelink.sock.announce"));
    }
}
