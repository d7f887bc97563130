//! A server that misbehaves, through the real client: ranged GETs that ignore `Range` (200
//! with the whole body) or answer another range give an error (EIO at the mount), never
//! wrong bytes at an offset, while an honest answer, and a whole small object for a range
//! from 0, are used; listing bodies of arbitrary bytes or hostile XML never panic, and a
//! continuation token handed out twice ends the listing with an error instead of looping;
//! a mount shows only the entries listed under its prefix.

use std::sync::{Arc, Mutex};

use futures::TryStreamExt;

use s3mount::s3::client::AwsStore;
use s3mount::s3::{ErrorKind, ObjectStore};

use crate::common;
use crate::common::http::{self, Response};

/// How the fake server answers a GET.
#[derive(Clone, Copy)]
enum Answer {
    /// As S3 does.
    Honest,
    /// 200 with the whole object, whatever the range.
    IgnoreRange,
    /// 206 for the object's first 100 bytes, whatever the range.
    WrongRange,
}

/// The object every GET is about: 1000 bytes.
fn object() -> Vec<u8> {
    (0..1000u32).map(|i| (i * 7 % 251) as u8).collect()
}

/// A loopback server answering every GET per `answer`; its URL.
fn server(answer: Answer) -> String {
    http::serve(move |req| {
        let range = req.header("range").and_then(|v| {
            let (a, b) = v.strip_prefix("bytes=")?.split_once('-')?;
            Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?))
        });
        let body = object();
        let (status, extra, part) = match (answer, range) {
            (Answer::Honest, Some((a, b))) => {
                let b = b.min(body.len() - 1);
                let cr = format!("Content-Range: bytes {a}-{b}/{}\r\n", body.len());
                ("206 Partial Content", cr, body[a..=b].to_vec())
            }
            (Answer::WrongRange, Some(_)) => (
                "206 Partial Content",
                format!("Content-Range: bytes 0-99/{}\r\n", body.len()),
                body[..100].to_vec(),
            ),
            _ => ("200 OK", String::new(), body),
        };
        Response {
            headers: format!("ETag: \"e\"\r\n{extra}"),
            ..Response::new(status, part)
        }
    })
}

fn store(answer: Answer) -> AwsStore {
    let s3 = common::S3::new(&server(answer), "AKIDEXAMPLE", "secret", "b");
    AwsStore::new(s3.client.clone(), "b")
}

#[test]
fn a_server_that_ignores_or_changes_the_range_gives_an_error_not_wrong_bytes() {
    common::rt().block_on(async {
        for (name, answer) in [
            ("ignores", Answer::IgnoreRange),
            ("changes", Answer::WrongRange),
        ] {
            let e = store(answer)
                .get_range("k", 100..200, None)
                .await
                .expect_err(name);
            assert_eq!(e.kind, ErrorKind::Other, "{name}: {e}");
            assert!(
                e.to_string().to_lowercase().contains("range"),
                "{name}: {e}"
            );
        }
    });
}

#[test]
fn honest_answers_and_a_whole_small_object_from_offset_0_are_used() {
    let data = object();
    common::rt().block_on(async {
        let honest = store(Answer::Honest);
        assert_eq!(
            honest.get_range("k", 100..200, None).await.unwrap(),
            &data[100..200]
        );
        assert_eq!(
            honest.get_range("k", 900..1100, None).await.unwrap(),
            &data[900..]
        );
        // A 200 with the whole object is right when the range starts at 0 and covers it.
        let whole = store(Answer::IgnoreRange);
        assert_eq!(
            whole.get_range("k", 0..4096, None).await.unwrap(),
            &data[..]
        );
    });
}

/// A loopback server answering every request 200 with the current `body`; its URL.
fn listing_server(body: Arc<Mutex<Vec<u8>>>) -> String {
    http::serve(move |_| Response {
        headers: "Content-Type: application/xml\r\n".into(),
        ..Response::new("200 OK", body.lock().unwrap().clone())
    })
}

/// One `<Contents>` entry from hostile values.
fn contents(key: &str, size: &str, modified: &str) -> String {
    format!(
        "<Contents><Key>{key}</Key><Size>{size}</Size><LastModified>{modified}</LastModified><ETag>&quot;e&quot;</ETag></Contents>"
    )
}

fn listing_xml(entries: &[String], prefixes: &[String], truncated: &str, token: &str) -> Vec<u8> {
    let prefixes: String = prefixes
        .iter()
        .map(|p| format!("<CommonPrefixes><Prefix>{p}</Prefix></CommonPrefixes>"))
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult><Name>b</Name><Prefix>p/</Prefix>{}{prefixes}<IsTruncated>{truncated}</IsTruncated><NextContinuationToken>{token}</NextContinuationToken></ListBucketResult>",
        entries.concat()
    )
    .into_bytes()
}

#[test]
fn a_repeated_continuation_token_ends_the_listing_with_an_error() {
    let body = Arc::new(Mutex::new(listing_xml(
        &[contents("p/a", "1", "2024-01-01T00:00:00.000Z")],
        &[],
        "true",
        "again",
    )));
    let s3 = common::S3::new(&listing_server(body), "AKIDEXAMPLE", "secret", "b");
    let store = AwsStore::new(s3.client.clone(), "b");
    let r = common::rt().block_on(async {
        tokio::time::timeout(
            std::time::Duration::from_secs(20),
            store.list_all("p/", true).try_collect::<Vec<_>>(),
        )
        .await
    });
    let e = r
        .expect("the listing never ended")
        .expect_err("a looping listing succeeded");
    assert!(e.to_string().contains("continuation token"), "{e}");
}

/// A value that XML or our parsers may choke on.
fn hostile_text() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop_oneof![
        Just(String::new()),
        Just("-1".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("9223372036854775807".to_owned()),
        Just("&amp;&lt;&#0;&#xD800;&bogus;".to_owned()),
        Just("<![CDATA[x]]>".to_owned()),
        Just("p/../x".to_owned()),
        Just("p//".to_owned()),
        Just("9999-99-99T99:99:99Z".to_owned()),
        Just("\u{0}".to_owned()),
        "[a-z/.%&;<>]{0,12}",
        any::<String>(),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Arbitrary bytes or hostile XML as a listing body: an error or a page, never a panic.
    #[test]
    fn any_listing_body_is_an_error_or_a_page_never_a_panic(
        raw in proptest::collection::vec(proptest::num::u8::ANY, 0..400),
        entries in proptest::collection::vec((hostile_text(), hostile_text(), hostile_text()), 0..5),
        prefixes in proptest::collection::vec(hostile_text(), 0..3),
        truncated in hostile_text(),
        use_raw in proptest::bool::ANY,
    ) {
        let body = if use_raw {
            raw
        } else {
            let entries: Vec<String> = entries.iter().map(|(k, s, m)| contents(k, s, m)).collect();
            listing_xml(&entries, &prefixes, &truncated, "t")
        };
        let s3 = common::S3::new(&listing_server(Arc::new(Mutex::new(body))), "AKIDEXAMPLE", "secret", "b");
        let store = AwsStore::new(s3.client.clone(), "b");
        let r = common::rt().block_on(store.list("p/", true, None, None));
        if let Ok(page) = r {
            // Whatever was decoded is plain data; the core checks keys against the prefix.
            proptest::prop_assert!(page.objects.len() <= 5 && page.prefixes.len() <= 3);
        }
    }
}

#[test]
fn a_mount_shows_only_the_entries_listed_under_its_prefix() {
    // A server that answers every listing with keys outside the prefix asked for, as a
    // broken proxy might: they are skipped with a warning, never shown or sliced.
    let body = listing_xml(
        &[
            contents("p/ok", "3", "2024-01-01T00:00:00.000Z"),
            contents("q/secret", "6", "2024-01-01T00:00:00.000Z"),
            contents("p", "1", "2024-01-01T00:00:00.000Z"),
        ],
        &["elsewhere/".into(), "p/sub/".into()],
        "false",
        "",
    );
    let url = listing_server(Arc::new(Mutex::new(body)));
    let conn = common::Conn {
        env: vec![
            ("AWS_ACCESS_KEY_ID".into(), "AKIDEXAMPLE".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "secret".into()),
        ],
        args: vec![],
    }
    .with_args(&["--endpoint-url", &url, "--region", "us-east-1"]);
    let m = common::Mount::with(&conn, "bkt/p", &[]);
    let mut names: Vec<String> = std::fs::read_dir(&m.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["ok", "sub"]);
    assert!(
        m.log_text().contains("outside the prefix"),
        "{}",
        m.log_text()
    );
}
