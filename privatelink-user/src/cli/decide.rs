//! `accept`, `reject`, `delete`: the provider's decisions and removals.

use super::{client, output::{self, Format}};
use crate::daemon::api::{ApplyResult, EndpointView, NodeDeleted, One, Request};
use anyhow::Result;

fn decided(to: &client::Target, req: Request, verb: &str, fmt: Format) -> Result<()> {
    let e: EndpointView = to.call_as(&req)?;
    if let Some(text) = output::structured(fmt, &e) {
        print!("{text}");
    } else {
        println!("endpoint {} ({}) {verb}: now {}", e.name, e.id, e.state);
    }
    Ok(())
}

pub fn accept(to: &client::Target, endpoint: String, fmt: Format) -> Result<()> {
    decided(to, Request::Accept { endpoint }, "accepted", fmt)
}

pub fn reject(to: &client::Target, endpoint: String, fmt: Format) -> Result<()> {
    decided(to, Request::Reject { endpoint }, "rejected", fmt)
}

pub fn delete(to: &client::Target, kind: One, name: String, force: bool, fmt: Format) -> Result<()> {
    if kind == One::Node {
        let said: String = to.call_as(&Request::Delete { kind, name: name.clone(), force })?;
        match output::structured(fmt, &NodeDeleted { node: name, message: said.clone() }) {
            Some(text) => print!("{text}"),
            None => println!("{said}"),
        }
        return Ok(());
    }
    let r: ApplyResult = to.call_as(&Request::Delete { kind, name, force })?;
    if let Some(text) = output::structured(fmt, &r) {
        print!("{text}");
        return Ok(());
    }
    for c in &r.changes {
        println!("{c}");
    }
    Ok(())
}
