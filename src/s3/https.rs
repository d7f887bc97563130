//! The HTTP(S) client every AWS SDK client of s3mount uses: the SDK's own hyper 1 client
//! with rustls on the *ring* crypto provider.
//!
//! Why not the SDK's `default-https-client` feature: it picks rustls on aws-lc-rs, whose C
//! library is built with cmake and took minutes of a first build (see
//! `bench/results-2026-12-03-firstrun.md`); ring builds in seconds and speaks the same TLS
//! 1.2/1.3 against S3, STS and SSO. Everything else matches the SDK default: the system's
//! root certificates (rustls-native-certs), the SDK's connect/read timeouts from each
//! client's config, and `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` from the environment (the
//! default for behavior version 2025-08-07 and later).

use std::sync::OnceLock;

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_smithy_http_client::{Builder, ConnectorBuilder};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

/// Most bytes hyper's HTTP/1 read buffer grows to on one connection (its default
/// `max_buf_size`, 8 KiB + 400 KiB), which it keeps while a body streams and, as a connection
/// in the pool, after. The SDK keeps hyper's builder to itself, so it cannot be lowered;
/// instead every GET counts it in the memory budget ([`super::ObjectStore::get_overhead`])
/// and the pool keeps at most [`IDLE_PER_HOST`] idle connections.
pub const READ_BUFFER: u64 = 8192 + 4096 * 100;

/// Idle connections kept per host. Unbounded (the SDK's default), a burst of 16 readers
/// and 4 writers left 63 connections holding 27 MiB of read buffers in a 64 MiB-budget
/// mount; 16 cover the default 8 GETs ahead of a reader plus 4 uploads, and a connection
/// beyond them is closed when it goes idle (the next burst opens it again).
pub const IDLE_PER_HOST: usize = 16;

/// The shared HTTPS client (one connection pool per process, as the SDK's default has).
///
/// Every `aws_config` loader and every hand-built SDK config must be given this client:
/// with the SDK's default client compiled out, a config without one fails its first
/// request with "no HTTP client was available".
pub fn client() -> SharedHttpClient {
    static CLIENT: OnceLock<SharedHttpClient> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            Builder::new().build_with_connector_fn(|settings, components| {
                let mut conn =
                    ConnectorBuilder::default().tls_provider(Provider::Rustls(CryptoMode::Ring));
                conn.set_connector_settings(settings.cloned());
                if let Some(components) = components {
                    conn.set_sleep_impl(components.sleep_impl());
                }
                conn.set_proxy_config(Some(ProxyConfig::from_env()));
                conn.set_pool_max_idle_per_host(Some(IDLE_PER_HOST));
                conn.build()
            })
        })
        .clone()
}
