//! The API's request handler, one line per request: reads are answered from the
//! picture of the moment (`picture`, no lock), changes go to the writer (`gateway`),
//! whose `run` shows the new picture before the answer is read from it. Reads like a
//! table of contents.

use super::{
    api::{One, Request, Response, Timestamp, TokenCreated, TokenView},
    gateway::Writer,
    picture::Shown,
};
use crate::model::{
    accounts,
    tokens::{self, TokenRecord},
};
use anyhow::{Context, Result};

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
            writer.run(|g| g.accept(&endpoint, vec![])).await?;
            Response::ok(shown.now().endpoint_view(&endpoint)?)
        }
        Request::Reject { endpoint } => {
            writer.run(|g| g.reject(&endpoint, vec![])).await?;
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
        Request::Conntrack { endpoint, standby } => Response::ok(shown.now().conntrack(endpoint.as_deref(), standby)?),
        Request::Whois { ip, port } => Response::ok(shown.now().whois(ip, port)?),
        Request::Status => Response::ok(shown.now().status()?),
        Request::Events { after } => Response::ok(shown.now().store.events(after, 10_000)?),
        Request::TokenCreate { account, name, expires_secs, read_only } => {
            let (rec, text) = mint(account.as_deref(), &name, expires_secs, read_only)?;
            let created = TokenCreated { id: rec.id.clone(), name, account, read_only, expires_at: rec.expires_ms.map(Timestamp), token: text };
            writer.run(|g| g.remember(|st| Ok(Some(accounts::add_token(st, rec.clone())?)))).await?;
            Response::ok(created)
        }
        Request::TokenList => Response::ok(
            shown.now().state.tokens.values().map(|t| TokenView {
                id: t.id.clone(),
                name: t.name.clone(),
                account: t.account.clone(),
                read_only: t.read_only,
                created_at: Timestamp(t.created_ms),
                expires_at: t.expires_ms.map(Timestamp),
            }).collect::<Vec<_>>(),
        ),
        Request::TokenRevoke { id } => {
            writer.run(|g| g.remember(|st| Ok(Some(accounts::revoke_token(st, &id)?)))).await?;
            let behind = everywhere(shown).await;
            if behind.is_empty() {
                Response::ok(format!("token {id} is revoked: it authenticates nothing from now on, on every node"))
            } else {
                Response::ok(format!("token {id} is revoked here; nodes {} had not followed within {} s (they refuse it once they do)", behind.join(", "), FOLLOW_WAIT.as_secs()))
            }
        }
        Request::Down => {
            writer.run(|g| g.down()).await?;
            Response::ok("the data path is detached and every pinned map and link is removed; the daemon stops")
        }
    })
}

/// How long a change that must be everywhere (a revocation) waits for the fleet.
const FOLLOW_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Wait until every live node of the fleet follows the generation shown now (their
/// registrations say which they follow); the nodes still behind after `FOLLOW_WAIT`.
async fn everywhere(shown: &Shown) -> Vec<String> {
    let pic = shown.now();
    let want = pic.state.generation;
    let start = tokio::time::Instant::now();
    loop {
        let store = pic.store.clone();
        let behind: Vec<String> = match tokio::task::spawn_blocking(move || store.beats()).await {
            // This node follows it by construction (its registration says so at its next beat).
            Ok(Ok(beats)) => beats.into_iter().filter(|b| b.generation < want && b.name != pic.opts.node).map(|b| b.name).collect(),
            _ => vec!["(the store did not answer)".into()],
        };
        if behind.is_empty() || start.elapsed() >= FOLLOW_WAIT {
            return behind;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A new token's record and its text: an id and a secret from the OS's random source.
fn mint(account: Option<&str>, name: &str, expires_secs: Option<u64>, read_only: bool) -> Result<(TokenRecord, String)> {
    let mut raw = [0u8; 36];
    getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("{e}")).context("drawing a token from the OS's random source")?;
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let (id, secret) = (hex(&raw[..4]), hex(&raw[4..]));
    let rec = TokenRecord::new(&id, &secret, name, account, read_only, expires_secs.map(|s| s.saturating_mul(1000)));
    Ok((rec, tokens::text(&id, &secret)))
}
