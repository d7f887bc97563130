//! The store layer on its own against Garage: the conformance suite every `ObjectStore`
//! must pass (the in-memory store runs the same suite as a unit test), through the
//! aws-sdk-s3 client and through the retry layer above it.

use std::sync::Arc;

use s3mount::s3::client::AwsStore;
use s3mount::s3::conformance;
use s3mount::s3::retry::{RetryPolicy, Retrying};

use crate::common::{S3, rt, unique};

#[test]
fn aws_store_on_garage_behaves_as_the_suite_expects() {
    let s3 = S3::garage();
    let store = AwsStore::new(s3.client.clone(), &s3.bucket);
    rt().block_on(conformance::run(
        &store,
        &format!("{}/", unique("conformance")),
    ));
    let retrying = Retrying::new(
        Arc::new(store.without_sdk_retries()),
        RetryPolicy::default(),
    );
    rt().block_on(conformance::run(
        &retrying,
        &format!("{}/", unique("conformance-retry")),
    ));
}
