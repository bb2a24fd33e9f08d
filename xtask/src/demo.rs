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
    /// The lab's tenant API (https with `--console`).
    pub api: &'static str,
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

/// Where `--console` publishes the console on the host.
const CONSOLE: &str = "https://127.0.0.1:8443/";

pub fn run(root: &Path, bin: PathBuf, keep: bool, console: bool) -> Result<()> {
    let api = if console { "https://127.0.0.1:8443" } else { "http://127.0.0.1:8443" };
    let mut d = Demo { bin, root: root.to_path_buf(), step: 0, socket: SOCKET.into(), api };
    if Path::new("/run/privatelink-lab").exists() {
        println!("A lab from an earlier run is still up; removing it first.");
        d.privatelink(&["lab", "down"])?;
    }
    let r = steps(&mut d, console);
    if r.is_err() || !keep {
        println!();
        let cleanup = d.privatelink(&["lab", "down"]);
        if r.is_ok() {
            cleanup?;
        }
    }
    r?;
    if console {
        console_guide(&d)?;
    } else if keep {
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

fn steps(d: &mut Demo, console: bool) -> Result<()> {
    d.say("Build the seeds' topology: consumer VPC1 with a client (10.0.0.2), provider VPC2 with two backend servers (192.168.2.10 and .11, port 8080), and a gateway with one interface per VPC running the privatelink daemon. The provider routes the SNAT range 11.163.0.0/16 back to the gateway.");
    if console {
        d.privatelink(&["lab", "up", "--console", "8443"])?;
    } else {
        d.privatelink(&["lab", "up"])?;
    }

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
    tenants(d)
}

/// The same again, but each account does its part itself through the tenant API, as
/// the consoles' screens do: root only hands out tokens.
fn tenants(d: &mut Demo) -> Result<()> {
    d.say("Tenants act for themselves: root gives each account a token of the tenant API (served by the daemon; the quick start's spec says account 100001 owns VPC1 and 100002 owns VPC2).");
    let provider = token(d, "100002", "provider")?;
    let consumer = token(d, "100001", "consumer")?;

    d.say("Console step 1, the provider (account 100002): create the endpoint service `orders` (tcp 81 -> 8080) in its VPC2, whitelisting account 100001.");
    let body = r#"{"name": "orders", "vpc": "vpc2", "backends": [{"address": "192.168.2.10"}, {"address": "192.168.2.11"}], "ports": [{"protocol": "tcp", "endpoint_port": 81, "service_port": 8080}], "allowed_accounts": ["100001"]}"#;
    d.curl(&provider, "PROVIDER", "POST", "/v1/services", Some(body))?;

    d.say("Console step 2, the consumer (account 100001), with the CLI as a tenant: the services available to it.");
    d.tenant_cli(&consumer, &["get", "services"])?;

    d.say("Console step 3, the consumer: create an endpoint to `orders` at 10.0.0.101 in its VPC1. It waits for the provider's approval.");
    let body = r#"{"name": "orders-from-vpc1", "vpc": "vpc1", "service": "orders", "ip": "10.0.0.101"}"#;
    let out = d.curl(&consumer, "CONSUMER", "POST", "/v1/endpoints", Some(body))?;
    if !String::from_utf8_lossy(&out.stdout).contains("pendingAcceptance") {
        bail!("the new endpoint is not pendingAcceptance");
    }

    d.say("Console step 4, the provider: its service's connections, and Accept.");
    d.curl(&provider, "PROVIDER", "GET", "/v1/services/orders/connections", None)?;
    d.curl(&provider, "PROVIDER", "POST", "/v1/services/orders/connections/orders-from-vpc1/accept", None)?;

    d.say("The client in VPC1 connects to 10.0.0.101:81; the backend sees a SNAT address.");
    let mut get = Command::new("ip");
    get.args(["netns", "exec", "pl-vpc1"]).arg(&d.bin).args(["lab", "get", "10.0.0.101:81", "--timeout-secs", "2"]);
    let out = d.run("ip netns exec pl-vpc1 privatelink lab get 10.0.0.101:81", &mut get)?;
    if !String::from_utf8_lossy(&out.stdout).contains("peer=11.163.") {
        bail!("the backend did not see a SNAT address");
    }

    d.say("Console step 5, the consumer: its endpoints, as the CLI shows them to a tenant; and root sees who manages what.");
    d.tenant_cli(&consumer, &["get", "endpoints"])?;
    d.privatelink(&["get", "services"])?;
    Ok(())
}

/// A token for `account`, written to a file of the lab's (removed with it).
fn token(d: &Demo, account: &str, name: &str) -> Result<PathBuf> {
    let out = d.privatelink(&["token", "create", "--account", account, "--name", name])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(t) = text.lines().find(|l| l.starts_with("pltok_")) else { bail!("no token in: {text}") };
    let file = Path::new("/run/privatelink-lab").join(format!("{name}.token"));
    std::fs::write(&file, format!("{t}\n"))?;
    println!("(saved in {})", file.display());
    Ok(file)
}

impl Demo {
    /// `curl` to the lab's tenant API with the token in `file` (shown as `$who`).
    fn curl(&self, file: &Path, who: &str, method: &str, path: &str, body: Option<&str>) -> Result<Output> {
        let token = std::fs::read_to_string(file)?.trim().to_string();
        let mut c = Command::new("ip");
        c.args(["netns", "exec", "pl-gw", "curl", "-fsS", "-X", method, "-H", &format!("Authorization: Bearer {token}"), "-w", "\n"]);
        if self.api.starts_with("https") {
            c.args(["--cacert", "/run/privatelink-lab/console.pem"]);
        }
        let mut shown = format!("curl -X {method} -H \"Authorization: Bearer ${who}\"");
        if let Some(b) = body {
            c.args(["-H", "Content-Type: application/json", "-d", b]);
            shown.push_str(&format!(" -d '{b}'"));
        }
        let api = self.api;
        c.arg(format!("{api}{path}"));
        shown.push_str(&format!(" {api}{path}"));
        self.run(&shown, &mut c)
    }

    /// The CLI as a tenant: the lab's tenant API with the token in `file`.
    fn tenant_cli(&self, file: &Path, args: &[&str]) -> Result<Output> {
        let mut c = Command::new("ip");
        let api = self.api;
        c.args(["netns", "exec", "pl-gw"]).arg(&self.bin).args(["--api", api, "--token-file"]).arg(file);
        let mut shown = format!("privatelink --api {api} --token-file {}", file.display());
        if api.starts_with("https") {
            c.args(["--api-ca", "/run/privatelink-lab/console.pem"]);
            shown.push_str(" --api-ca /run/privatelink-lab/console.pem");
        }
        c.args(args);
        self.run(&format!("{shown} {}", args.join(" ")), &mut c)
    }
}

/// `--console`: what to open, with which token, and what to click.
fn console_guide(d: &Demo) -> Result<()> {
    let read = |f: &str| std::fs::read_to_string(Path::new("/run/privatelink-lab").join(f)).map(|t| t.trim().to_string());
    let (provider, consumer, fingerprint) = (read("provider.token")?, read("consumer.token")?, read("console.sha256")?);
    println!(
        "\nThe lab is up with its console: {CONSOLE}\n\
         Its certificate is self-signed (/run/privatelink-lab/console.pem); check that the browser shows\n  SHA-256 {fingerprint}\n\
         before accepting it.\n\n\
         Sign in as the provider (account 100002) with\n  {provider}\n\
         and in another browser (or a private window) as the consumer (account 100001) with\n  {consumer}\n\n\
         Then, as the seeds' quick start goes:\n  \
         1. provider: Endpoint services > Create endpoint service: name `shop`, port mapping `tcp 82:8080`,\n     \
            backends `192.168.2.10` and `192.168.2.11`, whitelist `100001`;\n  \
         2. consumer: Available services > `shop` > Create endpoint: name `shop-ep`, address `10.0.0.102`;\n     \
            it shows `pending acceptance`; keep the page open;\n  \
         3. provider: `shop` > Endpoint connections > Accept; the consumer's page turns `accepted` by itself;\n  \
         4. connect: sudo ip netns exec pl-vpc1 {} lab session 10.0.0.102:82 --requests 60 --interval-ms 1000\n     \
            and watch the consumer's graph count it (中文: the language link at the top right).\n\
         Remove it all with: sudo privatelink lab down",
        d.bin.display()
    );
    Ok(())
}
