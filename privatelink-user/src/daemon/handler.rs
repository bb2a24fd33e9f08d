//! The API's request handler: one line per request, each a call into the file that
//! owns the concern (apply, views, events, gateway). Reads like a table of contents.

use super::{
    api::{One, Request, Response, SpecError},
    gateway::Gateway,
};
use anyhow::Result;

impl Gateway {
    pub fn handle(&mut self, req: Request) -> Response {
        match self.try_handle(req) {
            Ok(r) => r,
            Err(e) => Response::Err { error: format!("{e:#}"), spec_errors: vec![] },
        }
    }

    fn try_handle(&mut self, req: Request) -> Result<Response> {
        Ok(match req {
            Request::Apply { spec, dry_run } => self.apply_text(spec, dry_run),
            Request::Accept { endpoint } => ok(self.accept(&endpoint)?),
            Request::Reject { endpoint } => ok(self.reject(&endpoint)?),
            Request::Delete { kind: One::Node, name, .. } => {
                self.remove_node(&name)?;
                ok(format!("node {name} was removed from the fleet; its SNAT slice is free"))
            }
            Request::Delete { kind, name, force } => self.delete(kind, &name, force)?,
            Request::Get { kind, name } => self.get(kind, name.as_deref())?,
            Request::Describe { kind: One::Service, name } => ok(self.service_view(&name)?),
            Request::Describe { kind: One::Endpoint, name } => ok(self.endpoint_view(&name)?),
            Request::Describe { kind: One::Node, name } => {
                ok(self.nodes()?.into_iter().find(|n| n.name == name).ok_or_else(|| anyhow::anyhow!("no node named `{name}` in the fleet"))?)
            }
            Request::Stats => ok(self.stats()?),
            Request::Conntrack { endpoint } => ok(self.conntrack(endpoint.as_deref())?),
            Request::Whois { ip, port } => ok(self.whois(ip, port)?),
            Request::Status => ok(self.status()?),
            Request::Events { after } => ok(self.store.events(after, 10_000)?),
            Request::Down => {
                self.down()?;
                ok("the data path is detached and every pinned map and link is removed; the daemon stops")
            }
        })
    }
}

pub(super) fn ok<T: serde::Serialize>(v: T) -> Response {
    match serde_json::to_value(v) {
        Ok(ok) => Response::Ok { ok },
        Err(e) => Response::Err { error: format!("encoding the answer: {e}"), spec_errors: vec![] },
    }
}

/// Every error of a spec, in the order of its text.
pub(super) fn spec_error_response(mut errors: Vec<SpecError>) -> Response {
    crate::model::spec::sort(&mut errors);
    let n = errors.len();
    let error = format!("the spec has {n} error{}; nothing was applied", if n == 1 { "" } else { "s" });
    Response::Err { error, spec_errors: errors }
}
