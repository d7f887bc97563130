//! A fault-injecting TCP proxy between a mount and the S3 server, on loopback only.
//!
//! Faults, switched from the test while traffic flows: connection resets with a seeded
//! probability per forwarded chunk (server → client), an outage (every connection is reset
//! and new ones are refused), silence (connections stay open and nothing moves, as when
//! packets are dropped; what was held moves on once healed), and a slow trickle. Every
//! thread ends when the proxy is dropped.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What the network does now.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// Bytes flow (subject to the reset probability and trickle rate).
    Pass,
    /// The server is gone: connections are reset, new ones refused.
    Refuse,
    /// Nothing moves; connections stay open.
    Silent,
}

struct State {
    mode: Mutex<Mode>,
    /// Probability, per forwarded chunk from the server, of resetting the connection.
    reset_per_chunk: Mutex<f64>,
    /// Bytes per second in each direction (0: unlimited).
    trickle: AtomicU64,
    rng: Mutex<u64>,
    stop: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
    resets: AtomicU64,
    /// Connections the client has open now, and the most it ever had at once.
    open: AtomicU64,
    peak: AtomicU64,
}

impl State {
    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap()
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
        if mode == Mode::Refuse {
            for c in self.conns.lock().unwrap().drain(..) {
                reset(&c);
            }
        }
    }

    /// xorshift64*: a seeded, reproducible sequence.
    fn chance(&self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        let mut x = self.rng.lock().unwrap();
        *x ^= *x >> 12;
        *x ^= *x << 25;
        *x ^= *x >> 27;
        let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        (v as f64 / (1u64 << 53) as f64) < p
    }
}

/// Reset `s` (RST, not FIN): SO_LINGER with a zero timeout, then close.
fn reset(s: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    let _ = s.shutdown(Shutdown::Both);
}

/// A running proxy; stops (and cuts every connection) when dropped.
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<State>,
}

impl Proxy {
    /// Forward 127.0.0.1:<new port> to `upstream` (which must be on loopback).
    pub fn start(upstream: SocketAddr, seed: u64) -> Proxy {
        assert!(
            upstream.ip().is_loopback(),
            "the proxy only forwards to loopback"
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            mode: Mutex::new(Mode::Pass),
            reset_per_chunk: Mutex::new(0.0),
            trickle: AtomicU64::new(0),
            rng: Mutex::new(seed | 1),
            stop: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
            resets: AtomicU64::new(0),
            open: AtomicU64::new(0),
            peak: AtomicU64::new(0),
        });
        let st = state.clone();
        thread::spawn(move || accept_loop(listener, upstream, st));
        Proxy { addr, state }
    }

    /// The proxy for the S3 endpoint URL `endpoint` (`http://127.0.0.1:PORT`).
    pub fn for_endpoint(endpoint: &str, seed: u64) -> Proxy {
        let hostport = endpoint.trim_start_matches("http://").trim_end_matches('/');
        Proxy::start(hostport.parse().expect("endpoint is http://IP:PORT"), seed)
    }

    /// `http://127.0.0.1:PORT` of the proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Reset connections with probability `p` per chunk the server sends.
    pub fn set_resets(&self, p: f64) {
        *self.state.reset_per_chunk.lock().unwrap() = p;
    }

    /// Limit each direction of every connection to `bytes_per_sec` (0: no limit).
    pub fn set_trickle(&self, bytes_per_sec: u64) {
        self.state.trickle.store(bytes_per_sec, Ordering::Relaxed);
    }

    /// Back to normal.
    pub fn heal(&self) {
        self.state.set(Mode::Pass);
    }

    /// Connections the client has open through the proxy now (it has not closed its end).
    pub fn open_connections(&self) -> u64 {
        self.state.open.load(Ordering::Relaxed)
    }

    /// The most connections the client ever had open at once.
    pub fn peak_connections(&self) -> u64 {
        self.state.peak.load(Ordering::Relaxed)
    }

    /// How many connections were reset by the probability so far.
    pub fn resets(&self) -> u64 {
        self.state.resets.load(Ordering::Relaxed)
    }

    /// Switch to `mode` after `after`, and back to normal after `lasting` more, in the
    /// background (the thread ends early if the proxy is dropped).
    pub fn schedule(&self, after: Duration, mode: Mode, lasting: Duration) {
        let st = self.state.clone();
        thread::spawn(move || {
            thread::sleep(after);
            if st.stop.load(Ordering::Relaxed) {
                return;
            }
            st.set(mode);
            thread::sleep(lasting);
            st.set(Mode::Pass);
        });
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        for c in self.state.conns.lock().unwrap().drain(..) {
            reset(&c);
        }
    }
}

fn accept_loop(listener: TcpListener, upstream: SocketAddr, st: Arc<State>) {
    while !st.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((client, _)) => {
                if st.mode() == Mode::Refuse {
                    reset(&client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream) else {
                    reset(&client);
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                st.conns.lock().unwrap().push(client.try_clone().unwrap());
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (a, b) = (st.clone(), st.clone());
                let now = st.open.fetch_add(1, Ordering::Relaxed) + 1;
                st.peak.fetch_max(now, Ordering::Relaxed);
                thread::spawn(move || {
                    // Client → server ends when the client closes (or either side fails).
                    pump(client, server, a.clone(), false);
                    a.open.fetch_sub(1, Ordering::Relaxed);
                });
                thread::spawn(move || pump(s2, c2, b, true));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Copy `from` → `to` in chunks, applying the faults; `downstream` is server → client.
fn pump(mut from: TcpStream, mut to: TcpStream, st: Arc<State>, downstream: bool) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if st.stop.load(Ordering::Relaxed) {
            break;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => break,
        };
        // Silence holds the chunk until the network is back (or the proxy stops).
        while st.mode() == Mode::Silent && !st.stop.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(20));
        }
        if st.mode() == Mode::Refuse {
            break;
        }
        if downstream && st.chance(*st.reset_per_chunk.lock().unwrap()) {
            st.resets.fetch_add(1, Ordering::Relaxed);
            reset(&to);
            reset(&from);
            return;
        }
        let rate = st.trickle.load(Ordering::Relaxed);
        if rate > 0 {
            for piece in buf[..n].chunks(1024) {
                if to.write_all(piece).is_err() {
                    return;
                }
                thread::sleep(Duration::from_secs_f64(piece.len() as f64 / rate as f64));
            }
        } else if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    reset(&to);
    reset(&from);
}
