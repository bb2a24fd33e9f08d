//! A client's side of the local API (the CLI's, and the lab's when it takes a
//! daemon down): one request, one response, over the daemon's Unix socket.

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
