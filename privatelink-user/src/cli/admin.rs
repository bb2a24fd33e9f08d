//! `daemon`, `status`, `down`, `check`: running and inspecting the gateway itself.

use super::{client, output::{self, Format}};
use crate::{
    daemon::api::{Fill, Request, StatusView},
    daemon,
};
use anyhow::{Context, Result};
use std::path::Path;

pub fn daemon(opts: daemon::Options, log_format: super::LogFormat, log_level: &str) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(log_level))
        .context("--log-level")?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match log_format {
        super::LogFormat::Json => builder.json().init(),
        super::LogFormat::Text => builder.init(),
    }
    // glibc gives each thread that allocates an arena of its own, and keeps what they
    // freed: with the runtime's workers and the threads `block_in_place` starts, RSS at
    // 10,000 endpoints and 1M flows doubled (127 -> 252 MiB); four arenas: 166 MiB.
    // SAFETY: mallopt only tunes the allocator; called before any thread starts.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 4) };
    // Several workers: a long change (an apply of 10,000 endpoints) holds one of them
    // (`Writer::run`), reads are served on the others.
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("pl-daemon").build()?;
    rt.block_on(daemon::run(opts))
}

pub fn status(socket: &Path, fmt: Format) -> Result<()> {
    let s: StatusView = client::call_as(socket, &Request::Status)?;
    if let Some(text) = output::structured(fmt, &s) {
        print!("{text}");
        return Ok(());
    }
    let mut out = output::fields(&[
        ("data path", if s.data_path_loaded { format!("loaded, program id {}", s.program_id.unwrap_or(0)) } else { "not loaded (no spec applied yet)".into() }),
        ("node", match &s.zone {
            Some(z) => format!("{} (zone {z}), {} node(s) up", s.node, s.nodes_up),
            None => format!("{}, {} node(s) up", s.node, s.nodes_up),
        }),
        ("state", format!(
            "{} (generation {}){}",
            s.store,
            s.generation,
            if s.store_reachable { "" } else { ": UNREACHABLE, forwarding with the maps as they are" }
        )),
        ("pins", s.bpffs.clone()),
        ("announcing", match (&s.announce_error, s.announced.len()) {
            (Some(e), _) => format!("FAILING: {e}"),
            (None, 0) => "no routes".into(),
            (None, n) => {
                let mut tables: Vec<u32> = s.announced.iter().map(|r| r.table).collect();
                tables.dedup();
                format!("{n} route(s) in table {} (device pl-announce)", tables.iter().map(u32::to_string).collect::<Vec<_>>().join(", "))
            }
        }),
        ("reconciles", match s.last_reconcile {
            Some(r) => format!("{} (last: {} operations, {} map writes)", s.reconciles, r.ops, r.writes),
            None => s.reconciles.to_string(),
        }),
        ("sweeper", format!("{} passes, {} flows expired", s.sweeps, s.expired_flows)),
        ("drift repaired", format!("{} links re-attached, {} map operations, {} accounting counters", s.repaired_links, s.repaired_map_ops, s.repaired_accounting)),
    ]);
    if !s.interfaces.is_empty() {
        out.push('\n');
        out.push_str(&output::table_of(
            &s.interfaces,
            &[
                ("VPC", &|i| i.vpc.clone()),
                ("INTERFACE", &|i| i.interface.clone()),
                ("IFINDEX", &|i| i.ifindex.to_string()),
                ("PROGRAM", &|i| i.program_id.to_string()),
                ("XDP MODE", &|i| i.xdp_mode.clone()),
                ("LINK PIN", &|i| i.link_pinned.clone()),
            ],
        ));
    }
    if !s.maps.is_empty() {
        out.push('\n');
        let fill = |m: &Fill| if m.capacity == 0 { 0.0 } else { m.used as f64 * 100.0 / m.capacity as f64 };
        out.push_str(&output::table_of(
            &s.maps,
            &[
                ("TABLE", &|m| m.table.clone()),
                ("USED", &|m| m.used.to_string()),
                ("CAPACITY", &|m| m.capacity.to_string()),
                ("FILL", &|m| format!("{:.1}%", fill(m))),
            ],
        ));
    }
    // Last, where they are seen.
    for w in &s.warnings {
        out.push_str(&format!("\nWARNING: {w}\n"));
    }
    print!("{out}");
    Ok(())
}

pub fn down(socket: &Path, bpffs: &Path) -> Result<()> {
    match client::call(socket, &Request::Down) {
        Ok(v) => {
            println!("{}", v.as_str().unwrap_or("down"));
            Ok(())
        }
        Err(e) if e.downcast_ref::<client::CallError>().is_none() => {
            // No daemon answers: remove the pins it left.
            crate::dataplane::bpffs::remove_pins(bpffs).with_context(|| format!("removing pins under {}", bpffs.display()))?;
            println!("no daemon answered ({e:#}); removed the pins under {}", bpffs.display());
            Ok(())
        }
        Err(e) => Err(e),
    }
}

pub fn check() -> Result<()> {
    let dp = crate::dataplane::loader::Dataplane::load(&Default::default()).context("loading the data path")?;
    let info = dp.xdp()?.info().context("reading program info")?;
    println!("data path loaded: program id {}, verified by the kernel", info.id());
    Ok(())
}

pub fn lab(cmd: super::LabCommand) -> Result<()> {
    use super::LabCommand;
    use crate::lab;
    match cmd {
        LabCommand::Up { nodes, console, routing } => {
            if console.is_some() && nodes != 1 {
                anyhow::bail!("--console is for the single-gateway lab (--nodes 1)");
            }
            if routing != lab::Routing::Bird && nodes == 1 {
                anyhow::bail!("--routing is for a fleet (--nodes 2 or more)");
            }
            lab::up(nodes, console, routing)?;
            if nodes == 1 {
                println!("lab up: client netns {}, backends in {}, gateway {}", lab::NS_CLIENT, lab::NS_PROVIDER, lab::NS_GATEWAY);
            } else {
                println!("lab up: client netns {} behind router pl-router (BGP), backends in {}, etcd in pl-ctl, nodes pl-gw1..pl-gw{nodes}", lab::NS_CLIENT, lab::NS_PROVIDER);
                println!("node K's API: {}/gwK.sock (api.sock is node 1's)", lab::LAB_DIR);
            }
            println!("export PRIVATELINK_SOCKET={}", lab::socket().display());
            if let Some(port) = console {
                println!("console: https://127.0.0.1:{port}/ (self-signed certificate {}, SHA-256 fingerprint {})", lab::console_cert().display(), lab::console_fingerprint()?);
            }
        }
        LabCommand::Forward { listen, netns, to } => lab::forward::run(listen, &netns, to)?,
        LabCommand::Down => {
            lab::down()?;
            println!("lab down: namespaces, processes, pins and {} removed", lab::LAB_DIR);
        }
        LabCommand::Serve { name, address } => lab::serve(&name, address)?,
        LabCommand::Get { address, timeout_secs } => {
            println!("{}", lab::http_get(address, std::time::Duration::from_secs(timeout_secs))?);
        }
        LabCommand::Ecmp { table, into } => lab::ecmp::run(table, into)?,
        LabCommand::Session { address, requests, interval_ms } => lab::session(address, requests, std::time::Duration::from_millis(interval_ms))?,
    }
    Ok(())
}
