//! The API's request handler, one line per request: reads are answered from the
//! picture of the moment (`picture`, no lock), changes go to the writer (`gateway`),
//! whose `run` shows the new picture before the answer is read from it. Reads like a
//! table of contents.

use super::{
    api::{One, Request, Response},
    gateway::Writer,
    picture::Shown,
};
use anyhow::Result;

pub async fn handle(req: Request, writer: &Writer, shown: &Shown) -> Response {
    match answer(req, writer, shown).await {
        Ok(r) => r,
        Err(e) => Response::error(format!("{e:#}")),
    }
}

async fn answer(req: Request, writer: &Writer, shown: &Shown) -> Result<Response> {
    Ok(match req {
        Request::Apply { spec, dry_run } => writer.run(|g| g.apply_text(spec, dry_run)).await,
        Request::Accept { endpoint } => {
            writer.run(|g| g.accept(&endpoint)).await?;
            Response::ok(shown.now().endpoint_view(&endpoint)?)
        }
        Request::Reject { endpoint } => {
            writer.run(|g| g.reject(&endpoint)).await?;
            Response::ok(shown.now().endpoint_view(&endpoint)?)
        }
        Request::Delete { kind: One::Node, name, .. } => {
            writer.run(|g| g.remove_node(&name)).await?;
            Response::ok(format!("node {name} was removed from the fleet; its SNAT slice is free"))
        }
        Request::Delete { kind, name, force } => writer.run(|g| g.delete(kind, &name, force)).await?,
        Request::Get { kind, name } => shown.now().get(kind, name.as_deref())?,
        Request::Describe { kind: One::Service, name } => Response::ok(shown.now().service_view(&name)?),
        Request::Describe { kind: One::Endpoint, name } => Response::ok(shown.now().endpoint_view(&name)?),
        Request::Describe { kind: One::Node, name } => Response::ok(shown.now().node(&name)?),
        Request::Stats => Response::ok(shown.now().stats()?),
        Request::Conntrack { endpoint } => Response::ok(shown.now().conntrack(endpoint.as_deref())?),
        Request::Whois { ip, port } => Response::ok(shown.now().whois(ip, port)?),
        Request::Status => Response::ok(shown.now().status()?),
        Request::Events { after } => Response::ok(shown.now().store.events(after, 10_000)?),
        Request::Down => {
            writer.run(|g| g.down()).await?;
            Response::ok("the data path is detached and every pinned map and link is removed; the daemon stops")
        }
    })
}
