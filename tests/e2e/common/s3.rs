//! Checks that bypass the mount under test: [`S3`], a direct aws-sdk-s3 client on an
//! endpoint and bucket, and the one Tokio runtime ([`rt`]) every such call runs on.

use std::sync::OnceLock;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;

use super::servers::garage;

/// One runtime for every S3 call the tests make.
pub fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// A direct aws-sdk-s3 client on `server` for checks that bypass the mount.
pub struct S3 {
    pub client: Client,
    pub bucket: String,
}

impl S3 {
    /// A client on the Garage test server's main bucket.
    pub fn garage() -> S3 {
        let g = garage();
        S3::new(&g.endpoint, &g.key_id, &g.secret, &g.bucket)
    }

    /// A client for any endpoint and bucket.
    pub fn new(endpoint: &str, key_id: &str, secret: &str, bucket: &str) -> S3 {
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .http_client(s3mount::s3::https::client())
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .force_path_style(true)
            .credentials_provider(Credentials::new(key_id, secret, None, None, "test"))
            .build();
        S3 {
            client: Client::from_conf(conf),
            bucket: bucket.to_owned(),
        }
    }

    /// The same client on another bucket.
    pub fn with_bucket(&self, bucket: &str) -> S3 {
        S3 {
            client: self.client.clone(),
            bucket: bucket.to_owned(),
        }
    }

    /// PutObject.
    pub fn put(&self, key: &str, body: impl Into<Vec<u8>>) {
        let body = body.into();
        rt().block_on(async {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .body(ByteStream::from(body))
                .send()
                .await
                .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
        });
    }

    /// Many PutObjects, 32 at a time.
    pub fn put_many(&self, objects: Vec<(String, Vec<u8>)>) {
        use futures::StreamExt;
        rt().block_on(async {
            futures::stream::iter(objects)
                .map(|(k, v)| {
                    let c = self.client.clone();
                    let b = self.bucket.clone();
                    async move {
                        c.put_object()
                            .bucket(b)
                            .key(&k)
                            .body(ByteStream::from(v))
                            .send()
                            .await
                            .unwrap_or_else(|e| panic!("put {k}: {e:?}"));
                    }
                })
                .buffer_unordered(32)
                .collect::<Vec<_>>()
                .await;
        });
    }

    /// GetObject, `None` when the key does not exist.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        rt().block_on(async {
            match self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
            {
                Ok(o) => Some(o.body.collect().await.unwrap().into_bytes().to_vec()),
                Err(e) => {
                    let s = format!("{e:?}");
                    assert!(s.contains("NoSuchKey"), "get {key}: {s}");
                    None
                }
            }
        })
    }

    /// Every key under `prefix` (no delimiter).
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        rt().block_on(async {
            let mut keys = vec![];
            let mut token = None;
            loop {
                let out = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(prefix)
                    .set_continuation_token(token)
                    .send()
                    .await
                    .unwrap();
                keys.extend(
                    out.contents()
                        .iter()
                        .filter_map(|o| o.key().map(str::to_owned)),
                );
                match out.next_continuation_token() {
                    Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_owned()),
                    _ => break,
                }
            }
            keys
        })
    }

    /// Multipart uploads still open under `prefix`.
    pub fn pending_uploads(&self, prefix: &str) -> usize {
        rt().block_on(async {
            let out = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .send()
                .await
                .unwrap();
            out.uploads().len()
        })
    }
}
