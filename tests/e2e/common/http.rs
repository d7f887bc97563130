//! A small HTTP/1.1 server on loopback for the tests that need S3 to answer in a given way
//! — to record the requests the client sends, or to misbehave — where Garage and moto
//! would not. Each connection is served on its own thread, with keep-alive, until the
//! client closes it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;

/// A request as received: its head lowercased (request line and headers), and its body.
pub struct Request {
    /// Request line and headers, lowercased, one per line.
    pub head: String,
    /// The body (by `Content-Length`).
    pub body: Vec<u8>,
}

impl Request {
    /// The request line (`get /b/k?x-id=getobject http/1.1`).
    pub fn line(&self) -> &str {
        self.head.lines().next().unwrap_or("")
    }

    /// The value of header `name` (lowercase), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|r| r.strip_prefix(':'))
                .map(str::trim)
        })
    }
}

/// An answer: status (`"200 OK"`), extra header lines (each ending in `\r\n`), body.
pub struct Response {
    pub status: &'static str,
    pub headers: String,
    pub body: Vec<u8>,
}

impl Response {
    /// `status` with `body` and no extra headers.
    pub fn new(status: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: String::new(),
            body: body.into(),
        }
    }
}

/// Serve every request with `answer`; the server's URL.
pub fn serve(answer: impl Fn(&Request) -> Response + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push_str(&line.to_ascii_lowercase());
                    }
                    let mut req = Request {
                        head,
                        body: Vec::new(),
                    };
                    let len = req.header("content-length").and_then(|v| v.parse().ok());
                    req.body = vec![0u8; len.unwrap_or(0)];
                    if reader.read_exact(&mut req.body).is_err() {
                        return;
                    }
                    let r = answer(&req);
                    let head = format!(
                        "HTTP/1.1 {}\r\n{}Content-Length: {}\r\n\r\n",
                        r.status,
                        r.headers,
                        r.body.len()
                    );
                    if stream.write_all(head.as_bytes()).is_err()
                        || stream.write_all(&r.body).is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    url
}
