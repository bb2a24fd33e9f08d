//! The `privatelink` command line: clap types here, one file per group of verbs,
//! formatting in `output`. Exit codes: 0 ok, 1 error, 2 usage (clap).
//! Talks to the daemon only through `daemon::api` (its types, its `client`); `daemon`,
//! `check`, `lab` and `down` (when no daemon answers) start or clean up things
//! themselves.

mod admin;
mod apply;
mod decide;
mod get;
mod observe;
pub mod output;
mod serve;
mod token;

use crate::{
    daemon::api::{client, Kind, One},
    daemon,
};
use clap::{Parser, Subcommand};
use output::Format;
pub use serve::LogFormat;
use std::{net::Ipv4Addr, path::PathBuf, process::ExitCode};

#[derive(Parser)]
#[command(name = "privatelink", version, about = "PrivateLink data plane for Linux hosts: endpoint services and endpoints, in XDP")]
pub struct Cli {
    /// The daemon's API socket.
    #[arg(long, global = true, env = "PRIVATELINK_SOCKET", default_value = daemon::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Output of read commands.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value = "table")]
    pub output: Format,
    /// Act as a tenant through the tenant API at URL (https://HOST:PORT) instead of as
    /// root on the socket: get, describe, accept, reject, delete, stats, events.
    #[arg(long, global = true, env = "PRIVATELINK_API", value_name = "URL", requires = "token_file")]
    pub api: Option<String>,
    /// The file holding the tenant's API token (`privatelink token create` printed it).
    #[arg(long, global = true, env = "PRIVATELINK_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// CA certificates (PEM) to trust for --api instead of the system's.
    #[arg(long, global = true, env = "PRIVATELINK_API_CA", value_name = "FILE")]
    pub api_ca: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground: load and attach the data path, keep the maps in
    /// sync with the recorded state, expire idle flows, serve the API.
    #[command(after_help = "Examples:\n  sudo privatelink daemon --metrics 127.0.0.1:9469\n  sudo privatelink daemon --store etcd://10.0.0.5:2379 --node gw1 --zone z1\n  systemctl start privatelink    # the packaged unit")]
    Daemon(Box<serve::DaemonArgs>),
    /// (started by the daemon) Hold the announce device, and the routes through it,
    /// across daemon restarts; withdraw them when no daemon beats within the grace.
    #[command(hide = true)]
    AnnounceKeeper {
        #[arg(long)]
        grace_ms: u64,
    },
    /// Apply a spec: print the plan (+ create, ~ change, - delete) and carry it out.
    #[command(after_help = "Examples:\n  sudo privatelink apply -f /etc/privatelink/spec.yaml --dry-run\n  sudo privatelink apply -f /etc/privatelink/spec.yaml\n  sudo privatelink apply -f spec.yaml -o json | jq '.changes[].name'")]
    Apply {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Print the plan only.
        #[arg(long)]
        dry_run: bool,
    },
    /// List services, endpoints, VPCs or the fleet's nodes.
    #[command(after_help = "Examples:\n  sudo privatelink get endpoints\n  sudo privatelink get services web -o yaml\n  sudo privatelink get services -o json | jq -r '.[].backends[] | select(.health == \"down\") | .address'")]
    Get {
        #[arg(value_enum)]
        kind: Kind,
        name: Option<String>,
    },
    /// Everything about one service or endpoint (name or id).
    #[command(after_help = "Examples:\n  sudo privatelink describe endpoint web-from-vpc1\n  sudo privatelink describe service web -o json")]
    Describe {
        #[arg(value_enum)]
        kind: One,
        name: String,
    },
    /// Accept a pendingAcceptance (or rejected) endpoint.
    #[command(after_help = "Examples:\n  sudo privatelink get endpoints | grep pendingAcceptance\n  sudo privatelink accept web-from-vpc1")]
    Accept { endpoint: String },
    /// Reject an endpoint; its live flows follow the service's on_revoke.
    #[command(after_help = "Examples:\n  sudo privatelink reject web-from-vpc1")]
    Reject { endpoint: String },
    /// Delete a service (with its endpoints), an endpoint, or a node gone for good.
    #[command(after_help = "Examples:\n  sudo privatelink delete endpoint web-from-vpc1\n  sudo privatelink delete service web --force\n  sudo privatelink delete node gw3")]
    Delete {
        #[arg(value_enum)]
        kind: One,
        name: String,
        /// Delete a service even while endpoints are accepted or creating.
        #[arg(long)]
        force: bool,
    },
    /// Per-endpoint packets, bytes, connections and drops by reason.
    #[command(after_help = "Examples:\n  sudo privatelink stats\n  sudo privatelink stats --watch\n  sudo privatelink stats -o json | jq '.endpoints[] | {endpoint, active_connections, drops}'")]
    Stats {
        /// Redraw every second with rates.
        #[arg(long)]
        watch: bool,
    },
    /// Live flows.
    #[command(after_help = "Examples:\n  sudo privatelink conntrack list\n  sudo privatelink conntrack list --endpoint web-from-vpc1 -o json\n  sudo privatelink conntrack list --standby")]
    Conntrack {
        #[command(subcommand)]
        command: ConntrackCommand,
    },
    /// Which endpoint, account, VPC and client a backend is talking to.
    #[command(after_help = "Examples:\n  sudo privatelink whois 11.163.0.7:40312\n  sudo privatelink whois 11.163.0.7 -o json")]
    Whois {
        /// SNAT_IP or SNAT_IP:PORT, as a backend sees its peer.
        address: String,
    },
    /// Attached interfaces, program ids, map fill levels.
    #[command(after_help = "Examples:\n  sudo privatelink status\n  sudo privatelink status -o json | jq '.warnings'")]
    Status,
    /// Endpoint state changes, backend health changes, connection-limit and SNAT
    /// exhaustion episodes, oldest first.
    #[command(after_help = "Examples:\n  sudo privatelink events\n  sudo privatelink events --follow -o json")]
    Events {
        /// Keep printing new events as they happen.
        #[arg(long)]
        follow: bool,
    },
    /// API tokens: create one for an account (or the operator), list them, revoke one.
    #[command(after_help = "Examples:\n  sudo privatelink token create --account 100001 --name console --expires 90d\n  sudo privatelink token create --admin --name ops --read-only\n  sudo privatelink token list\n  sudo privatelink token revoke 0a1b2c3d")]
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Detach the data path everywhere, remove every pinned map and link, stop the daemon.
    #[command(after_help = "Examples:\n  sudo privatelink down\n  sudo privatelink down --bpffs /sys/fs/bpf/privatelink    # when no daemon answers")]
    Down {
        /// Where pins are, for when no daemon answers.
        #[arg(long, default_value = daemon::DEFAULT_BPFFS)]
        bpffs: PathBuf,
    },
    /// Load the data path into the kernel (runs the verifier) and unload it again.
    #[command(after_help = "Examples:\n  sudo privatelink check")]
    Check,
    /// Print a shell completion script (needs no root and no daemon), e.g.
    /// `privatelink completion bash > /etc/bash_completion.d/privatelink`.
    #[command(after_help = "Examples:\n  privatelink completion bash > /etc/bash_completion.d/privatelink\n  privatelink completion zsh > \"${fpath[1]}/_privatelink\"\n  privatelink completion fish > ~/.config/fish/completions/privatelink.fish")]
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (privatelink.1 and one per verb) into DIR (any user, no
    /// daemon); `cargo xtask package` ships them.
    #[command(hide = true)]
    Man {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// The seeds' quick-start topology in network namespaces, to try it by hand.
    #[command(after_help = "Examples:\n  sudo privatelink lab up && sudo ip netns exec pl-vpc1 curl http://10.0.0.100/\n  sudo privatelink lab up --nodes 3\n  sudo privatelink lab down")]
    Lab {
        #[command(subcommand)]
        command: LabCommand,
    },
}

#[derive(Subcommand)]
pub enum LabCommand {
    /// Build it: consumer VPC1 with a client (netns pl-vpc1), provider VPC2 with two
    /// backends (pl-vpc2), a gateway (pl-gw) running the daemon. API socket:
    /// /run/privatelink-lab/api.sock. With `--nodes N` (2-4): a fleet instead, etcd
    /// (pl-ctl), N nodes (pl-gw1..) in zones z1/z2 announcing over BGP to a consumer
    /// router (pl-router); node K's socket is /run/privatelink-lab/gwK.sock.
    Up {
        #[arg(long, default_value = "1")]
        nodes: usize,
        /// Serve the gateway's tenant API and console over HTTPS (a self-signed
        /// certificate) and publish it on the host's 127.0.0.1:PORT.
        #[arg(long, value_name = "PORT")]
        console: Option<u16>,
        /// The routing daemon of a fleet's nodes and router.
        #[arg(long, value_enum, default_value = "bird")]
        routing: crate::lab::Routing,
    },
    /// (used by `lab up --console`) the host's LISTEN to TO inside namespace NETNS.
    #[command(hide = true)]
    Forward {
        #[arg(long)]
        listen: std::net::SocketAddr,
        #[arg(long)]
        netns: String,
        #[arg(long)]
        to: std::net::SocketAddr,
    },
    /// Stop and remove everything `lab up` made.
    Down,
    /// (used by `lab up`) a backend answering `backend=NAME peer=IP:PORT`.
    #[command(hide = true)]
    Serve {
        #[arg(long)]
        name: String,
        #[arg(long)]
        address: std::net::SocketAddr,
    },
    /// An HTTP GET from the current network namespace, with a timeout.
    Get {
        address: std::net::SocketAddr,
        #[arg(long, default_value = "3")]
        timeout_secs: u64,
    },
    /// One long connection: `--requests` HTTP/1.1 GETs on it, `--interval-ms` apart,
    /// each answer printed as it comes; fails at the first error.
    Session {
        address: std::net::SocketAddr,
        #[arg(long, default_value = "10")]
        requests: u32,
        #[arg(long, default_value = "500")]
        interval_ms: u64,
    },
    /// (used by `lab up --nodes`) the lab router's forwarding plane: mirror BIRD's
    /// ECMP routes in `--table` into resilient next-hop groups in the main table.
    #[command(hide = true)]
    Ecmp {
        #[arg(long)]
        table: u32,
        /// Where the resilient routes go (default: the main table).
        #[arg(long, default_value_t = 254)]
        into: u32,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Make a token; it is printed once (the store keeps only its hash).
    Create {
        /// The account it acts for.
        #[arg(long, required_unless_present = "admin", conflicts_with = "admin")]
        account: Option<String>,
        /// An operator token: acts for every account.
        #[arg(long)]
        admin: bool,
        #[arg(long, default_value = "default")]
        name: String,
        /// Its lifetime (e.g. 90d, 12h); none: until revoked.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<std::time::Duration>,
        /// Reads only: every change answers 403.
        #[arg(long)]
        read_only: bool,
    },
    List,
    /// Revoke a token by its id: it authenticates nothing from then on.
    Revoke { id: String },
}

#[derive(Subcommand)]
pub enum ConntrackCommand {
    List {
        /// Only this endpoint's flows (name or id).
        #[arg(long)]
        endpoint: Option<String>,
        /// The flows this node holds for the nodes whose buddy it is (its standby
        /// table), with the node each belongs to.
        #[arg(long)]
        standby: bool,
    },
}

/// `SNAT_IP[:PORT]`
pub fn parse_address(s: &str) -> Result<(Ipv4Addr, Option<u16>), String> {
    let (ip, port) = match s.split_once(':') {
        Some((ip, port)) => (ip, Some(port.parse::<u16>().map_err(|_| format!("`{port}` is not a port"))?)),
        None => (s, None),
    };
    let ip = ip.parse().map_err(|_| format!("`{ip}` is not an IPv4 address"))?;
    Ok((ip, port))
}

fn is_root() -> bool {
    // SAFETY: trivial libc call.
    unsafe { libc::geteuid() == 0 }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // These two print or write documentation and touch nothing else: any user.
    use clap::CommandFactory;
    match &cli.command {
        Command::Completion { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "privatelink", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        Command::Man { out } => {
            return match std::fs::create_dir_all(out).and_then(|()| clap_mangen::generate_to(Cli::command(), out)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("privatelink: man: {}: {e}", out.display());
                    ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    // A tenant talks to the tenant API with its token, as any user; root to the socket.
    let to = match (&cli.api, &cli.token_file) {
        (Some(url), Some(token)) => match client::Target::api(url, token, cli.api_ca.as_deref()) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("privatelink: {e:#}");
                return ExitCode::FAILURE;
            }
        },
        _ if !is_root() => {
            eprintln!("privatelink: must be run as root (the API and the data path are root-only); a tenant uses --api URL --token-file FILE");
            return ExitCode::FAILURE;
        }
        _ => client::Target::Socket(cli.socket.clone()),
    };
    let r = match cli.command {
        Command::Daemon { .. } if matches!(to, client::Target::Api(_)) => Err(anyhow::anyhow!("`daemon` runs on the gateway as root, not through --api")),
        Command::Daemon(args) => {
            let (format, level) = (args.log_format, args.log_level.clone());
            admin::daemon(args.options(cli.socket), format, &level)
        }
        Command::AnnounceKeeper { grace_ms } => {
            let socket = crate::dataplane::announce::keeper::socket_of(&cli.socket);
            crate::dataplane::announce::keeper::run(&socket, std::time::Duration::from_millis(grace_ms)).map_err(Into::into)
        }
        Command::Apply { file, dry_run } => apply::run(&to, &file, dry_run, cli.output),
        Command::Get { kind, name } => get::get(&to, kind, name, cli.output),
        Command::Describe { kind, name } => get::describe(&to, kind, name, cli.output),
        Command::Accept { endpoint } => decide::accept(&to, endpoint, cli.output),
        Command::Reject { endpoint } => decide::reject(&to, endpoint, cli.output),
        Command::Delete { kind, name, force } => decide::delete(&to, kind, name, force, cli.output),
        Command::Stats { watch } => observe::stats(&to, watch, cli.output),
        Command::Conntrack { command: ConntrackCommand::List { endpoint, standby } } => observe::conntrack(&to, endpoint, standby, cli.output),
        Command::Whois { address } => match parse_address(&address) {
            Ok((ip, port)) => observe::whois(&to, ip, port, cli.output),
            Err(e) => {
                eprintln!("privatelink: whois: {e}");
                return ExitCode::from(2);
            }
        },
        Command::Status => to.socket("status").and_then(|s| admin::status(s, cli.output)),
        Command::Events { follow } => observe::events(&to, follow, cli.output),
        Command::Down { bpffs } => to.socket("down").and_then(|s| admin::down(s, &bpffs)),
        Command::Token { command } => to.socket("token").and_then(|s| token::run(s, command, cli.output)),
        Command::Check => to.socket("check").and_then(|_| admin::check()),
        Command::Lab { command } => to.socket("lab").and_then(|_| admin::lab(command)),
        // Answered above, before the root check.
        Command::Completion { .. } | Command::Man { .. } => Ok(()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(client::CallError::Spec { error, errors }) = e.downcast_ref::<client::CallError>() {
                for se in errors {
                    eprintln!("{se}");
                }
                eprintln!("privatelink: {error}");
            } else {
                eprintln!("privatelink: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}
