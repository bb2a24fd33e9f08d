//! `token create|list|revoke`: the tenant API's tokens, managed by root on the socket.

use super::{client, output::{self, Format}, TokenCommand};
use crate::daemon::api::{Request, TokenCreated, TokenView};
use anyhow::Result;
use std::path::Path;

pub fn run(socket: &Path, cmd: TokenCommand, fmt: Format) -> Result<()> {
    match cmd {
        TokenCommand::Create { account, admin: _, name, expires, read_only } => {
            let req = Request::TokenCreate { account, name, expires_secs: expires.map(|d| d.as_secs().max(1)), read_only };
            let t: TokenCreated = client::call_as(socket, &req)?;
            match output::structured(fmt, &t) {
                Some(text) => print!("{text}"),
                None => {
                    let who = t.account.as_deref().map_or("the operator (every account)".to_string(), |a| format!("account {a}"));
                    println!("token {} ({}) for {who}{}; shown this once:", t.id, t.name, if t.read_only { ", read-only" } else { "" });
                    println!("{}", t.token);
                }
            }
        }
        TokenCommand::List => {
            let rows: Vec<TokenView> = client::call_as(socket, &Request::TokenList)?;
            match output::structured(fmt, &rows) {
                Some(text) => print!("{text}"),
                None => {
                    let cells: Vec<Vec<String>> = rows
                        .iter()
                        .map(|t| {
                            vec![
                                t.id.clone(),
                                t.name.clone(),
                                t.account.clone().unwrap_or_else(|| "(operator)".into()),
                                if t.read_only { "read-only" } else { "read-write" }.into(),
                                t.created_at.to_string(),
                                t.expires_at.map_or("never".into(), |e| e.to_string()),
                            ]
                        })
                        .collect();
                    print!("{}", output::table(&["ID", "NAME", "ACCOUNT", "ACCESS", "CREATED", "EXPIRES"], &cells));
                }
            }
        }
        TokenCommand::Revoke { id } => {
            let said: String = client::call_as(socket, &Request::TokenRevoke { id })?;
            match output::structured(fmt, &said) {
                Some(text) => print!("{text}"),
                None => println!("{said}"),
            }
        }
    }
    Ok(())
}
