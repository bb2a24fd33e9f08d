//! `accept`, `reject`, `delete`: the provider's decisions and removals.

use super::{client, output::{self, Format}};
use crate::daemon::api::{ApplyResult, EndpointView, One, Request};
use anyhow::Result;
use std::path::Path;

fn decided(socket: &Path, req: Request, verb: &str, fmt: Format) -> Result<()> {
    let e: EndpointView = client::call_as(socket, &req)?;
    if fmt == Format::Json {
        print!("{}", output::json(&e));
    } else {
        println!("endpoint {} ({}) {verb}: now {}", e.name, e.id, e.state);
    }
    Ok(())
}

pub fn accept(socket: &Path, endpoint: String, fmt: Format) -> Result<()> {
    decided(socket, Request::Accept { endpoint }, "accepted", fmt)
}

pub fn reject(socket: &Path, endpoint: String, fmt: Format) -> Result<()> {
    decided(socket, Request::Reject { endpoint }, "rejected", fmt)
}

pub fn delete(socket: &Path, kind: One, name: String, force: bool, fmt: Format) -> Result<()> {
    if kind == One::Node {
        let said: String = client::call_as(socket, &Request::Delete { kind, name, force })?;
        if fmt == Format::Json {
            print!("{}", output::json(&said));
        } else {
            println!("{said}");
        }
        return Ok(());
    }
    let r: ApplyResult = client::call_as(socket, &Request::Delete { kind, name, force })?;
    if fmt == Format::Json {
        print!("{}", output::json(&r));
        return Ok(());
    }
    for c in &r.changes {
        println!("{c}");
    }
    Ok(())
}
