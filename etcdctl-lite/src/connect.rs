//! One etcd client per endpoint (a client over several endpoints does not fail over cleanly),
//! with the dial timeout bounding the TLS handshake too: a hung member (SIGSTOP: the kernel
//! accepts TCP, TLS never answers) is bounded by neither the connect nor the request timeout.

use crate::error::{CtlError, Result};
use crate::options::ClientOptions;
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Clients kept for the next call, one per endpoint and TLS material: an operation that takes a
/// verdict after each member (`rotate certs`) would otherwise open a TLS connection to every
/// member for every member. A kept client that has answered and then fails a request is
/// forgotten and the request tried again on a new connection ([`with_client`]), so a stale
/// connection never makes a member look down; one that never answered is new, and its failure
/// is the endpoint's answer.
#[derive(Clone, Default)]
pub struct KeptClients(Arc<Mutex<HashMap<(String, u64), Kept>>>);

#[derive(Clone)]
struct Kept {
    client: Client,
    answered: bool,
}

impl std::fmt::Debug for KeptClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeptClients")
    }
}

impl KeptClients {
    fn key(endpoint: &str, opts: &ClientOptions) -> (String, u64) {
        // the files are read again at each call: a CA rotation changes what to trust
        let mut h = std::collections::hash_map::DefaultHasher::new();
        if let Some(tls) = &opts.tls {
            (&tls.ca_pem, &tls.identity).hash(&mut h);
        }
        (opts.dial_timeout, opts.command_timeout).hash(&mut h);
        (endpoint.to_string(), h.finish())
    }
    /// A lazy client (nothing dialled yet) for each endpoint that has none, so that requests
    /// sent to an endpoint at once share one TLS connection instead of dialling one each.
    pub async fn prepare(&self, endpoints: &[String], opts: &ClientOptions) {
        for e in endpoints {
            if self.get(e, opts).is_none()
                && let Ok(client) = client_for(e, opts).await
                && let Ok(mut m) = self.0.lock()
            {
                m.entry(Self::key(e, opts)).or_insert(Kept { client, answered: false });
            }
        }
    }
    fn get(&self, endpoint: &str, opts: &ClientOptions) -> Option<Kept> {
        self.0.lock().ok()?.get(&Self::key(endpoint, opts)).cloned()
    }
    fn keep(&self, endpoint: &str, opts: &ClientOptions, client: &Client) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(Self::key(endpoint, opts), Kept { client: client.clone(), answered: true });
        }
    }
    /// Drops the clients kept for `endpoint` (whatever files they were made with); whether there
    /// were any. Before a member stops: etcd's graceful stop waits (about a second) for an idle
    /// client connection to close. After it restarts: its old connection would reconnect to a
    /// port that accepts but does not serve until the member has rejoined, and wait out the
    /// request's whole bound where a new connection fails at the dial timeout.
    pub fn forget_endpoint(&self, endpoint: &str) -> bool {
        let Ok(mut m) = self.0.lock() else { return false };
        let before = m.len();
        m.retain(|(kept, _), _| kept != endpoint);
        m.len() != before
    }
    fn forget(&self, endpoint: &str, opts: &ClientOptions) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(&Self::key(endpoint, opts));
        }
    }
}

/// Runs `request` with the endpoint's client: a kept one if `opts` keeps clients, else a new
/// one (kept when it answered). A kept client that had answered and fails is forgotten and
/// `request` runs once more on a new connection; the caller bounds the whole.
pub async fn with_client<T, F, Fut>(endpoint: &str, opts: &ClientOptions, request: F) -> Result<std::result::Result<T, etcd_client::Error>>
where
    F: Fn(Client) -> Fut,
    Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
{
    let Some(kept) = &opts.kept else {
        return Ok(request(client_for(endpoint, opts).await?).await);
    };
    if let Some(Kept { client, answered }) = kept.get(endpoint, opts) {
        match request(client.clone()).await {
            Ok(v) if answered => return Ok(Ok(v)),
            Ok(v) => {
                kept.keep(endpoint, opts, &client);
                return Ok(Ok(v));
            }
            Err(e) if !answered => {
                kept.forget(endpoint, opts); // a new connection's failure: the endpoint's answer
                return Ok(Err(e));
            }
            Err(_) => kept.forget(endpoint, opts),
        }
    }
    let client = client_for(endpoint, opts).await?;
    let answer = request(client.clone()).await;
    if answer.is_ok() {
        kept.keep(endpoint, opts, &client);
    }
    Ok(answer)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgetting_an_endpoint_drops_every_client_kept_for_it_and_no_other() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (a, b) = ("http://127.0.0.1:1", "http://127.0.0.1:2");
            let opts = |secs| ClientOptions::new(&[a.to_string(), b.to_string()], None, None, None, Duration::from_secs(1), Duration::from_secs(secs)).unwrap();
            let (short, long) = (opts(2), opts(3));
            let kept = KeptClients::default();
            for (endpoint, o) in [(a, &short), (a, &long), (b, &short)] {
                kept.keep(endpoint, o, &client_for(endpoint, o).await.unwrap());
            }
            assert!(kept.forget_endpoint(a));
            assert!(kept.get(a, &short).is_none() && kept.get(a, &long).is_none());
            assert!(kept.get(b, &short).is_some());
            assert!(!kept.forget_endpoint(a), "nothing left to forget");
        });
    }

    #[test]
    fn a_prepared_client_is_not_tried_again_when_it_fails_and_one_that_answered_is() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let e = "http://127.0.0.1:1"; // nothing listens: refused
            let o = ClientOptions::new(&[e.to_string()], None, None, None, Duration::from_secs(1), Duration::from_secs(2)).unwrap();
            let calls = std::sync::atomic::AtomicUsize::new(0);
            let ask = |mut c: Client| {
                calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                async move { c.status().await }
            };
            let prepared = KeptClients::default();
            prepared.prepare(&[e.to_string()], &o).await;
            assert!(with_client(e, &o.clone().keeping(&prepared), ask).await.unwrap().is_err());
            assert_eq!(calls.swap(0, std::sync::atomic::Ordering::Relaxed), 1, "a new connection's failure is the answer");
            assert!(prepared.get(e, &o).is_none(), "and it is not kept");
            let kept = KeptClients::default();
            kept.keep(e, &o, &client_for(e, &o).await.unwrap());
            assert!(with_client(e, &o.clone().keeping(&kept), ask).await.unwrap().is_err());
            assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 2, "a kept client that fails is tried once on a new connection");
        });
    }
}
