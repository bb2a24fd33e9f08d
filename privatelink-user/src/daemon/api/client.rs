//! A client's side of the local API (the CLI's, and the lab's when it takes a
//! daemon down): one request, one response, over the daemon's Unix socket; or, for a
//! tenant, the same requests through the tenant API (`remote`).

use super::{Failure, Request};
use anyhow::{bail, Context, Result};
use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::Path,
};

/// A failed call: a plain error, or a spec with errors (printed one per line).
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    Failed(String),
    #[error("{error}")]
    Spec { error: String, errors: Vec<super::SpecError> },
}

/// Where the CLI's requests go.
pub enum Target {
    /// root on the gateway: the daemon's socket.
    Socket(std::path::PathBuf),
    /// A tenant: the tenant API, with its token.
    Api(Box<super::remote::Remote>),
}

impl Target {
    /// The tenant API at `url`, as the holder of the token in `token_file`.
    pub fn api(url: &str, token_file: &Path, ca: Option<&Path>) -> Result<Target> {
        Ok(Target::Api(Box::new(super::remote::Remote::new(url, token_file, ca)?)))
    }

    pub fn call(&self, req: &Request) -> Result<serde_json::Value> {
        match self {
            Target::Socket(p) => call(p, req),
            Target::Api(r) => r.call(req),
        }
    }

    pub fn call_as<T: serde::de::DeserializeOwned>(&self, req: &Request) -> Result<T> {
        serde_json::from_value(self.call(req)?).context("decoding the daemon's answer")
    }

    /// The socket, for what only root does on the gateway.
    pub fn socket(&self, verb: &str) -> Result<&Path> {
        match self {
            Target::Socket(p) => Ok(p),
            Target::Api(_) => bail!("`{verb}` is for root on the gateway (its socket), not for a tenant through --api"),
        }
    }
}

pub fn call(socket: &Path, req: &Request) -> Result<serde_json::Value> {
    let mut s = UnixStream::connect(socket).with_context(|| {
        format!("cannot reach the daemon at {}: is `privatelink daemon` running? (--socket / PRIVATELINK_SOCKET)", socket.display())
    })?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    s.write_all(&line)?;
    let mut answer = String::new();
    BufReader::new(&s).read_line(&mut answer).context("reading the daemon's answer")?;
    if answer.is_empty() {
        bail!("the daemon closed the connection without answering");
    }
    let mut v: serde_json::Value = serde_json::from_str(&answer).context("decoding the daemon's answer")?;
    if let Some(ok) = v.get_mut("ok") {
        return Ok(ok.take());
    }
    match serde_json::from_value::<Failure>(v).context("decoding the daemon's answer")? {
        Failure { error, spec_errors } if spec_errors.is_empty() => Err(CallError::Failed(error).into()),
        Failure { error, spec_errors } => Err(CallError::Spec { error, errors: spec_errors }.into()),
    }
}

pub fn call_as<T: serde::de::DeserializeOwned>(socket: &Path, req: &Request) -> Result<T> {
    let v = call(socket, req)?;
    serde_json::from_value(v).context("decoding the daemon's answer")
}
