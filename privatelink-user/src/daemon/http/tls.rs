//! TLS for the tenant API (rustls, the ring provider): the certificate chain and key
//! read from PEM files, and a listener that hands axum connections whose handshake
//! is done. Handshakes run on tasks of their own (bounded in time), so a slow or
//! hostile client never holds up the others.

use anyhow::{Context, Result};
use std::{io, net::SocketAddr, path::Path, sync::Arc, time::Duration};
use tokio::{net::{TcpListener, TcpStream}, sync::mpsc};
use tokio_rustls::{
    rustls::{
        self,
        pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    },
    server::TlsStream,
    TlsAcceptor,
};

/// How long a client has to finish its handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the certificate chain {}", cert.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", cert.display());
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading the private key {}", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and key do not make a TLS identity")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// TCP connections with their TLS handshake done, as axum takes them.
pub struct Listener {
    done: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl Listener {
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> io::Result<Listener> {
        let local = tcp.local_addr()?;
        let (tx, done) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "tenant API: accepting a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            tx.send((tls, peer)).await.ok();
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "tenant API: TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "tenant API: TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Listener { done, local })
    }
}

impl axum::serve::Listener for Listener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.done.recv().await {
            Some(c) => c,
            // The accepting task never ends while the listener lives.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}
