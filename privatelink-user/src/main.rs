//! The `privatelink` binary. For now: `check` loads the embedded data path into the
//! kernel (verifier included) and reports what it loaded.
use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "privatelink", version, about = "PrivateLink data plane for Linux hosts (XDP)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load the XDP data path into the kernel (runs the verifier) and unload it again.
    Check,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("privatelink: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Check => {
            if unsafe { libc::geteuid() } != 0 {
                anyhow::bail!("must run as root (loading eBPF programs needs CAP_BPF and CAP_NET_ADMIN)");
            }
            let dp = privatelink::loader::Dataplane::load(&Default::default())
                .context("loading the data path")?;
            let info = dp.xdp()?.info().context("reading program info")?;
            println!("data path loaded: program id {}, verified by the kernel", info.id());
            Ok(())
        }
    }
}
