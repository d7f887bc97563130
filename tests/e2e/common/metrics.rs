//! Reading a mount's `--metrics-addr` endpoint: plain HTTP/1.1 over TCP (no client crate
//! for one GET), and one series' value out of the Prometheus text.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over plain TCP: the response head and body.
pub fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP response");
    (head.to_owned(), body.to_owned())
}

/// The scrape at `/metrics`, checked to be a 200 in the Prometheus text format.
pub fn scrape(addr: SocketAddr) -> String {
    let (head, body) = http_get(addr, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    body
}

/// The value of `series` (`name` or `name{labels}` as rendered); 0 when absent.
pub fn value(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Successful S3 requests of operation `op`.
pub fn s3_ok(scrape: &str, op: &str) -> f64 {
    value(
        scrape,
        &format!("s3mount_s3_requests_total{{operation=\"{op}\",outcome=\"ok\"}}"),
    )
}
