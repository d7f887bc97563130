//! Ranged GETs against a server that misbehaves: one that ignores `Range` (200 with the
//! whole body) or answers another range must give an error (EIO at the mount), never
//! wrong bytes at an offset; an honest answer, and a whole small object for a range from
//! 0, are used.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use s3mount::s3::client::AwsStore;
use s3mount::s3::{ErrorKind, ObjectStore};

use crate::common;

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

/// A loopback server answering every request per `answer`; its URL.
fn server(answer: Answer) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut range = None;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                            let (a, b) = v.trim().split_once('-').unwrap();
                            range =
                                Some((a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()));
                        }
                    }
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
                    let head = format!(
                        "HTTP/1.1 {status}\r\nETag: \"e\"\r\n{extra}Content-Length: {}\r\n\r\n",
                        part.len()
                    );
                    if stream.write_all(head.as_bytes()).is_err()
                        || stream.write_all(&part).is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    url
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
            assert!(e.to_string().to_lowercase().contains("range"), "{name}: {e}");
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
