//! One etcd client per endpoint (a client over several endpoints does not fail over cleanly),
//! with the dial timeout bounding the TLS handshake too: a hung member (SIGSTOP: the kernel
//! accepts TCP, TLS never answers) is bounded by neither the connect nor the request timeout.

use crate::error::{CtlError, Result};
use crate::options::ClientOptions;
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use std::future::Future;
use std::time::Duration;

/// A lazy client for one endpoint (nothing is dialled until the first request).
pub async fn client_for(endpoint: &str, opts: &ClientOptions) -> Result<Client> {
    connect(endpoint, opts, Some(opts.command_timeout)).await
}

/// The same without a per-request timeout, for a stream that lives for hours (a watch): the
/// keep-alive still finds a member that went away.
pub async fn client_for_stream(endpoint: &str, opts: &ClientOptions) -> Result<Client> {
    connect(endpoint, opts, None).await
}

async fn connect(endpoint: &str, opts: &ClientOptions, request_timeout: Option<Duration>) -> Result<Client> {
    let mut connect = ConnectOptions::new().with_connect_timeout(opts.dial_timeout).with_keep_alive(Duration::from_secs(2), opts.command_timeout);
    if let Some(t) = request_timeout {
        connect = connect.with_timeout(t);
    }
    if let Some(tls) = &opts.tls {
        let mut t = TlsOptions::new().timeout(opts.dial_timeout);
        if let Some(ca) = &tls.ca_pem {
            t = t.ca_certificate(Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = &tls.identity {
            t = t.identity(Identity::from_pem(cert, key));
        }
        connect = connect.with_tls(t);
    }
    Client::connect([endpoint], Some(connect)).await.map_err(|e| CtlError::Endpoint { endpoint: endpoint.into(), reason: e.to_string() })
}

/// Runs `fut` with an outer deadline: whatever happens inside, the caller gets an answer by then.
pub async fn bounded<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(limit, fut).await.ok()
}
