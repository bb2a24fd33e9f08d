//! The CLI as a tenant: the socket's requests that make sense for an account, sent to
//! the tenant API over HTTPS (rustls; the system's CAs or `--api-ca`) with a bearer
//! token, and answered in the socket's shapes so every output format stays the same.
//! Plain HTTP only to a loopback address, as the daemon serves it.

use super::{ApplyResult, EndpointStats, EndpointView, ErrorBody, Event, Kind, One, Report, Request, ServicesAnswer, StatsView};
use crate::model::plan::Change;
use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::{net::IpAddr, path::Path, sync::Arc, time::Duration};
use tokio_rustls::rustls::{self, pki_types::{pem::PemObject, CertificateDer, ServerName}};

/// How long one request may take, connection and handshake included.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A tenant API to talk to.
pub struct Remote {
    host: String,
    port: u16,
    token: String,
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// A refusal the API answered with: its status and message (and field errors).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    pub status: u16,
    pub message: String,
}

impl Remote {
    /// `url`: `https://HOST:PORT` (or `http://` to a loopback address); the token read
    /// from `token_file`; `ca`: a PEM file of CAs to trust instead of the system's.
    pub fn new(url: &str, token_file: &Path, ca: Option<&Path>) -> Result<Remote> {
        let uri: hyper::Uri = url.parse().with_context(|| format!("--api {url:?} is not a URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => bail!("--api {url:?}: the URL must start with https:// (or http:// to a loopback address)"),
        };
        let host = uri.host().context("--api: the URL has no host")?.trim_matches(['[', ']']).to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        if !https && !host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()) && host != "localhost" {
            bail!("--api {url:?}: plain http:// only to a loopback address (tokens would cross the network in clear)");
        }
        let token = std::fs::read_to_string(token_file).with_context(|| format!("reading the token file {}", token_file.display()))?.trim().to_string();
        anyhow::ensure!(!token.is_empty(), "the token file {} is empty", token_file.display());
        let tls = https.then(|| client_config(ca)).transpose()?;
        Ok(Remote { host, port, token, tls })
    }

    /// One request: the status and the body (JSON, or nothing).
    fn send(&self, method: &str, path: &str) -> Result<(u16, Bytes)> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async { tokio::time::timeout(TIMEOUT, self.exchange(method, path)).await.context("the tenant API did not answer in time")? })
    }

    async fn exchange(&self, method: &str, path: &str) -> Result<(u16, Bytes)> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await.with_context(|| format!("cannot reach the tenant API at {}:{}", self.host, self.port))?;
        match &self.tls {
            Some(config) => {
                let name = ServerName::try_from(self.host.clone()).context("the API's host name")?;
                let tls = tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp).await.context("TLS with the tenant API")?;
                self.over(tls, method, path).await
            }
            None => self.over(tcp, method, path).await,
        }
    }

    async fn over<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static>(&self, io: T, method: &str, path: &str) -> Result<(u16, Bytes)> {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)).await?;
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", format!("{}:{}", self.host, self.port))
            .header("authorization", format!("Bearer {}", self.token))
            .body(Full::new(Bytes::new()))?;
        let answer = sender.send_request(req).await?;
        let status = answer.status().as_u16();
        Ok((status, answer.into_body().collect().await?.to_bytes()))
    }

    /// `method path`, its JSON answer read as `T`; a refusal as `Refused`.
    fn json<T: DeserializeOwned>(&self, method: &str, path: &str) -> Result<T> {
        let (status, body) = self.send(method, path)?;
        if !(200..300).contains(&status) {
            let message = serde_json::from_slice::<ErrorBody>(&body).map_or_else(|_| String::from_utf8_lossy(&body).to_string(), |e| {
                let fields: Vec<String> = e.errors.iter().map(|f| format!("\n  {}: {}", if f.path.is_empty() { "(body)" } else { &f.path }, f.message)).collect();
                format!("{}{}", e.error, fields.concat())
            });
            return Err(Refused { status, message: format!("{message} (HTTP {status})") }.into());
        }
        let body = if body.is_empty() { Bytes::from_static(b"null") } else { body };
        serde_json::from_slice(&body).context("decoding the tenant API's answer")
    }

    /// A socket request, made through the tenant API, answered as the socket answers.
    pub fn call(&self, req: &Request) -> Result<Value> {
        let seg = |s: &str| s.replace('%', "%25").replace('/', "%2F").replace('?', "%3F").replace('#', "%23").replace(' ', "%20");
        Ok(match req {
            Request::Get { kind: Kind::Services, name: None } => serde_json::to_value(self.json::<ServicesAnswer>("GET", "/v1/services")?)?,
            Request::Get { kind: Kind::Services, name: Some(n) } => Value::Array(vec![self.json("GET", &format!("/v1/services/{}", seg(n)))?]),
            Request::Get { kind: Kind::Endpoints, name: None } => self.json("GET", "/v1/endpoints")?,
            Request::Get { kind: Kind::Endpoints, name: Some(n) } => Value::Array(vec![self.json("GET", &format!("/v1/endpoints/{}", seg(n)))?]),
            Request::Describe { kind: One::Service, name } => self.json("GET", &format!("/v1/services/{}", seg(name)))?,
            Request::Describe { kind: One::Endpoint, name } => self.json("GET", &format!("/v1/endpoints/{}", seg(name)))?,
            Request::Accept { endpoint } | Request::Reject { endpoint } => {
                let verb = if matches!(req, Request::Accept { .. }) { "accept" } else { "reject" };
                let e: EndpointView = self.json("GET", &format!("/v1/endpoints/{}", seg(endpoint)))?;
                self.json("POST", &format!("/v1/services/{}/connections/{}/{verb}", seg(&e.service), seg(&e.name)))?
            }
            Request::Delete { kind: kind @ (One::Service | One::Endpoint), name, force } => {
                let (list, what) = if *kind == One::Service { ("services", "service") } else { ("endpoints", "endpoint") };
                self.json::<Value>("DELETE", &format!("/v1/{list}/{}?force={force}", seg(name)))?;
                let change = Change { op: '-', kind: what.into(), name: name.clone(), id: None, details: Vec::new() };
                serde_json::to_value(ApplyResult { dry_run: false, changes: vec![change], reconcile: Report::default() })?
            }
            Request::Stats => {
                let mine: Vec<EndpointView> = self.json("GET", "/v1/endpoints")?;
                let endpoints = mine.iter().map(|e| self.json::<EndpointStats>("GET", &format!("/v1/endpoints/{}/stats", seg(&e.name)))).collect::<Result<Vec<_>>>()?;
                serde_json::to_value(StatsView { endpoints, vpcs: Vec::new(), gateway: Default::default() })?
            }
            Request::Events { after } => serde_json::to_value(self.json::<Vec<Event>>("GET", &format!("/v1/events?after={after}"))?)?,
            other => bail!("{} is for root on the gateway (its socket), not for a tenant through --api", verb_of(other)),
        })
    }
}

fn verb_of(req: &Request) -> &'static str {
    match req {
        Request::Apply { .. } => "`apply`",
        Request::Get { kind: Kind::Vpcs, .. } => "`get vpcs`",
        Request::Get { kind: Kind::Nodes, .. } => "`get nodes`",
        Request::Describe { .. } => "`describe node`",
        Request::Delete { .. } => "`delete node`",
        Request::Conntrack { .. } => "`conntrack`",
        Request::Whois { .. } => "`whois`",
        Request::Status => "`status`",
        Request::Down => "`down`",
        Request::TokenCreate { .. } | Request::TokenList | Request::TokenRevoke { .. } => "`token`",
        _ => "this verb",
    }
}

/// TLS towards the API: the CAs of `ca`, or the system's.
fn client_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(file) => {
            for c in CertificateDer::pem_file_iter(file).with_context(|| format!("reading --api-ca {}", file.display()))? {
                roots.add(c.with_context(|| format!("reading --api-ca {}", file.display()))?)?;
            }
            anyhow::ensure!(!roots.is_empty(), "--api-ca {} holds no certificate", file.display());
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                // A system certificate rustls cannot use is skipped, as browsers do.
                let _skipped = roots.add(c).is_err();
            }
            anyhow::ensure!(!roots.is_empty(), "no CA certificates found on this system: give the API's CA with --api-ca FILE");
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
