//! The `--metrics-addr` endpoint: `GET /metrics` in the Prometheus text format.
//!
//! The address is resolved and bound by [`Exporter::listen`] in the command's first
//! process, before anything is mounted and before a background mount forks: a bad address
//! or a port in use is then a usage error on one line, and the listening socket is
//! inherited by the daemon. [`Exporter::start`] serves it from a thread of its own with a
//! one-thread runtime, so a scrape never competes with file system requests for the
//! mount's workers (rendering is a walk over a few dozen series).
//!
//! Only the addresses asked for are bound: an IP address as given, or every address a host
//! name resolves to (`localhost`: 127.0.0.1 and, where the host has IPv6, ::1). There is
//! no default address and no wildcard unless one is given (`0.0.0.0:9100`).

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Response, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;
use tracing::{debug, info};

/// Why `--metrics-addr` cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Not a `HOST:PORT` that can be listened on.
    #[error("--metrics-addr {addr}: {why} (expected HOST:PORT, e.g. 127.0.0.1:9100)")]
    BadAddress {
        /// As given.
        addr: String,
        /// What is wrong with it.
        why: String,
    },
    /// The address could not be bound (in use, not an address of this host, no permission).
    #[error("--metrics-addr {addr}: cannot listen on {at}: {source}")]
    Bind {
        /// As given.
        addr: String,
        /// The address that failed.
        at: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A recorder was installed already (metrics are set up once per process).
    #[error("metrics are already being recorded in this process")]
    AlreadyInstalled,
    /// The serving thread could not be started.
    #[error("cannot start the metrics endpoint: {0}")]
    Start(#[source] std::io::Error),
}

/// How long a scraper may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How often histogram samples are folded in between scrapes (they are buffered until
/// then, so memory stays bounded when nobody scrapes).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The addresses `addr` (`HOST:PORT`) means.
pub fn resolve(addr: &str) -> Result<Vec<SocketAddr>, MetricsError> {
    let bad = |why: &str| MetricsError::BadAddress {
        addr: addr.to_owned(),
        why: why.to_owned(),
    };
    let port_zero = || bad("port 0 would be a random port nobody knows to scrape");
    if let Ok(a) = addr.parse::<SocketAddr>() {
        return if a.port() == 0 {
            Err(port_zero())
        } else {
            Ok(vec![a])
        };
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(bad("no port"));
    };
    if host.is_empty() {
        return Err(bad("no host (to listen on every interface, say 0.0.0.0)"));
    }
    if host.contains(':') || host.starts_with('[') {
        return Err(bad("not an IPv6 address in brackets, such as [::1]:9100"));
    }
    let port: u16 = port.parse().map_err(|_| bad("invalid port"))?;
    if port == 0 {
        return Err(port_zero());
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
    {
        return Err(bad("invalid host name"));
    }
    let mut all: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| bad(&format!("cannot resolve {host}: {e}")))?
        .collect();
    all.dedup();
    if all.is_empty() {
        return Err(bad(&format!("{host} resolves to no address")));
    }
    Ok(all)
}

/// Bind every address of `addr`. Of several addresses a host name resolves to, one this
/// host cannot have (IPv6 switched off) is skipped; any other failure — a port in use
/// above all — refuses the whole address.
pub fn bind(addr: &str) -> Result<Vec<TcpListener>, MetricsError> {
    let targets = resolve(addr)?;
    let several = targets.len() > 1;
    let mut bound = Vec::new();
    let mut unavailable = None;
    for at in targets {
        match TcpListener::bind(at) {
            Ok(l) => bound.push(l),
            Err(e)
                if several
                    && matches!(
                        e.raw_os_error(),
                        Some(libc::EADDRNOTAVAIL | libc::EAFNOSUPPORT)
                    ) =>
            {
                unavailable = Some((at, e));
            }
            Err(source) => {
                return Err(MetricsError::Bind {
                    addr: addr.to_owned(),
                    at,
                    source,
                });
            }
        }
    }
    match (bound.is_empty(), unavailable) {
        (true, Some((at, source))) => Err(MetricsError::Bind {
            addr: addr.to_owned(),
            at,
            source,
        }),
        _ => Ok(bound),
    }
}

/// The endpoint, bound and recording, not yet serving.
pub struct Exporter {
    listeners: Vec<TcpListener>,
    handle: PrometheusHandle,
}

impl Exporter {
    /// Bind `addr` and install the process's recorder. Call before forking (the socket is
    /// inherited) and before any thread exists; serve with [`Exporter::start`].
    pub fn listen(addr: &str) -> Result<Exporter, MetricsError> {
        let listeners = bind(addr)?;
        let handle = super::install()?;
        Ok(Exporter { listeners, handle })
    }

    /// The bound addresses.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Serve `/metrics` from a thread of its own for the rest of the process.
    pub fn start(self) -> Result<(), MetricsError> {
        let addresses = self.addresses();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(MetricsError::Start)?;
        let listeners = {
            let _in_runtime = rt.enter();
            self.listeners
                .into_iter()
                .map(|l| {
                    l.set_nonblocking(true)?;
                    tokio::net::TcpListener::from_std(l)
                })
                .collect::<std::io::Result<Vec<_>>>()
                .map_err(MetricsError::Start)?
        };
        let handle = self.handle;
        std::thread::Builder::new()
            .name("s3mount-metrics".into())
            .spawn(move || rt.block_on(serve(listeners, handle)))
            .map_err(MetricsError::Start)?;
        for a in addresses {
            info!("serving metrics at http://{a}/metrics");
        }
        Ok(())
    }
}

/// Accept scrapes on every listener, forever; fold histogram samples in meanwhile.
async fn serve(listeners: Vec<tokio::net::TcpListener>, handle: PrometheusHandle) {
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP_EVERY);
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    let loops = listeners
        .into_iter()
        .map(|l| accept_loop(l, handle.clone()));
    futures::future::join_all(loops).await;
}

async fn accept_loop(listener: tokio::net::TcpListener, handle: PrometheusHandle) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, typically: wait instead of spinning.
                debug!(error = %e, "accepting a metrics connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let r = answer(&handle, req.method(), req.uri().path());
                async move { Ok::<_, Infallible>(r) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                debug!(error = %e, "metrics connection ended with an error");
            }
        });
    }
}

/// The answer to `method path`: the scrape at `/metrics`, 404 elsewhere, 405 for anything
/// but GET and HEAD.
fn answer(handle: &PrometheusHandle, method: &Method, path: &str) -> Response<Full<Bytes>> {
    let status = |code: StatusCode, text: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *r.status_mut() = code;
        r
    };
    if path != "/metrics" {
        return status(
            StatusCode::NOT_FOUND,
            "not found: metrics are at /metrics\n",
        );
    }
    if method != Method::GET && method != Method::HEAD {
        let mut r = status(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let mut r = Response::new(Full::new(Bytes::from(handle.render())));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn why(addr: &str) -> String {
        match resolve(addr) {
            Err(MetricsError::BadAddress { why, .. }) => why,
            other => panic!("{addr}: {other:?}"),
        }
    }

    #[test]
    fn addresses_are_ip_or_host_with_a_port() {
        assert_eq!(
            resolve("127.0.0.1:9100").unwrap(),
            ["127.0.0.1:9100".parse().unwrap()]
        );
        assert_eq!(
            resolve("[::1]:9100").unwrap(),
            ["[::1]:9100".parse().unwrap()]
        );
        assert!(
            resolve("localhost:9100")
                .unwrap()
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 9100)
        );
        assert_eq!(why("127.0.0.1"), "no port");
        assert_eq!(why("nonsense"), "no port");
        assert_eq!(why("127.0.0.1:http"), "invalid port");
        assert_eq!(why("127.0.0.1:70000"), "invalid port");
        assert!(why("127.0.0.1:0").starts_with("port 0"));
        assert!(why("localhost:0").starts_with("port 0"));
        assert!(why(":9100").starts_with("no host"));
        assert!(why("::1:9100").contains("brackets"));
        assert_eq!(why("a b:9100"), "invalid host name");
        let e = resolve("nonsense").unwrap_err().to_string();
        assert_eq!(
            e,
            "--metrics-addr nonsense: no port (expected HOST:PORT, e.g. 127.0.0.1:9100)"
        );
    }

    #[test]
    fn a_port_in_use_is_refused() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let e = bind(&addr).unwrap_err();
        assert!(matches!(e, MetricsError::Bind { .. }), "{e:?}");
        assert!(e.to_string().contains("in use"), "{e}");
        drop(taken);
        assert_eq!(bind(&addr).unwrap().len(), 1);
    }

    /// `GET path` over plain TCP: the status line and the body.
    fn get(addr: SocketAddr, method: &str, path: &str) -> (String, String) {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        (head.lines().next().unwrap().to_owned(), body.to_owned())
    }

    #[test]
    fn serves_the_scrape_at_metrics_only() {
        let recorder = super::super::recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!(super::super::FUSE_REQUESTS, "opcode" => "read").increment(3)
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        Exporter {
            listeners: vec![listener],
            handle,
        }
        .start()
        .unwrap();
        let (status, body) = get(addr, "GET", "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(
            body.contains("s3mount_fuse_requests_total{opcode=\"read\"} 3"),
            "{body}"
        );
        let (status, _) = get(addr, "GET", "/");
        assert_eq!(status, "HTTP/1.1 404 Not Found");
        let (status, _) = get(addr, "POST", "/metrics");
        assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    }
}
