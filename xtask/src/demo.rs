//! `cargo xtask demo [--keep]`: the seeds' quick start, narrated, through the real
//! `privatelink` binary and its `lab`. Orchestration only: every step is a command a
//! user could type.

use anyhow::{bail, Result};
use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

const SOCKET: &str = "/run/privatelink-lab/api.sock";

pub(crate) struct Demo {
    pub bin: PathBuf,
    pub root: PathBuf,
    pub step: u32,
    /// The API socket `privatelink` commands go to.
    pub socket: String,
}

impl Demo {
    pub fn say(&mut self, what: &str) {
        self.step += 1;
        println!("\n== Step {}: {what}", self.step);
    }

    fn pl(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.current_dir(&self.root).env("PRIVATELINK_SOCKET", &self.socket).args(args);
        c
    }

    /// Show the command, run it, echo its output; fail on a non-zero exit.
    pub fn run(&self, shown: &str, c: &mut Command) -> Result<Output> {
        println!("$ {shown}");
        let out = c.output()?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            bail!("`{shown}` failed ({})", out.status);
        }
        Ok(out)
    }

    pub fn privatelink(&self, args: &[&str]) -> Result<Output> {
        self.run(&format!("privatelink {}", args.join(" ")), &mut self.pl(args))
    }

    /// An HTTP GET from the client in VPC1.
    fn client_get(&self) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", "pl-vpc1"]).arg(&self.bin).args(["lab", "get", "10.0.0.100:80", "--timeout-secs", "2"]);
        c
    }
}

pub fn run(root: &Path, bin: PathBuf, keep: bool) -> Result<()> {
    let mut d = Demo { bin, root: root.to_path_buf(), step: 0, socket: SOCKET.into() };
    if Path::new("/run/privatelink-lab").exists() {
        println!("A lab from an earlier run is still up; removing it first.");
        d.privatelink(&["lab", "down"])?;
    }
    let r = steps(&mut d);
    if r.is_err() || !keep {
        println!();
        let cleanup = d.privatelink(&["lab", "down"]);
        if r.is_ok() {
            cleanup?;
        }
    }
    r?;
    if keep {
        println!(
            "\nThe lab is still up (--keep). Try it by hand:\n  \
             sudo ip netns exec pl-vpc1 curl http://10.0.0.100/      # the client in VPC1\n  \
             export PRIVATELINK_SOCKET={SOCKET}\n  \
             sudo -E privatelink get endpoints\n  \
             sudo -E privatelink stats\n\
             Remove it with: sudo privatelink lab down"
        );
    } else {
        println!("\nDone: the lab is removed (namespaces, processes, pinned maps and links).");
    }
    Ok(())
}

fn steps(d: &mut Demo) -> Result<()> {
    d.say("Build the seeds' topology: consumer VPC1 with a client (10.0.0.2), provider VPC2 with two backend servers (192.168.2.10 and .11, port 8080), and a gateway with one interface per VPC running the privatelink daemon. The provider routes the SNAT range 11.163.0.0/16 back to the gateway.");
    d.privatelink(&["lab", "up"])?;

    d.say("The provider (account 100002) publishes the endpoint service `web` (tcp 80 -> 8080) for account 100001 with manual connection approval; the consumer (account 100001) creates the endpoint 10.0.0.100 in VPC1.");
    d.privatelink(&["apply", "-f", "examples/quickstart.yaml"])?;

    d.say("The endpoint waits for the provider's approval.");
    let out = d.privatelink(&["get", "endpoints"])?;
    if !String::from_utf8_lossy(&out.stdout).contains("pendingAcceptance") {
        bail!("the endpoint is not pendingAcceptance");
    }

    d.say("So the client in VPC1 cannot connect to 10.0.0.100:80 yet.");
    println!("$ ip netns exec pl-vpc1 privatelink lab get 10.0.0.100:80");
    let out = d.client_get().output()?;
    if out.status.success() {
        bail!("the client connected through a pending endpoint: {}", String::from_utf8_lossy(&out.stdout));
    }
    println!("refused, as expected: {}", String::from_utf8_lossy(&out.stderr).trim());

    d.say("The provider accepts the connection.");
    d.privatelink(&["accept", "web-from-vpc1"])?;

    d.say("The client connects to 10.0.0.100:80; the backend answers with its name and the source address it saw: an address of the SNAT range, never the client's 10.0.0.2.");
    let out = d.run("ip netns exec pl-vpc1 privatelink lab get 10.0.0.100:80", &mut d.client_get())?;
    let answer = String::from_utf8_lossy(&out.stdout);
    if !answer.contains("peer=11.163.") {
        bail!("the backend did not see a SNAT address: {answer}");
    }

    d.say("The endpoint and what went through it.");
    d.privatelink(&["get", "endpoints"])?;
    d.privatelink(&["stats"])?;
    Ok(())
}
