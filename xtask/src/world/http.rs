//! A minimal HTTP/1.1 client: one request per connection, over TCP or a unix socket, every step
//! bounded by one deadline. The registry's manifest lookups and the Docker engine's API use it.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use camino::Utf8PathBuf;

/// Where a server listens.
#[derive(Debug, Clone, PartialEq)]
pub enum Address {
    /// `host:port`.
    Tcp(String),
    Unix(Utf8PathBuf),
}

/// An answer: status, headers (names in lowercase) and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header; `name` in lowercase.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// The largest body read: an engine's whole image list fits many times over.
const MAX_BODY: usize = 256 * 1024 * 1024;

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// Connects to the first of a name's addresses that answers, in the resolver's order (a
/// `localhost` that resolves to ::1 first reaches a server on 127.0.0.1), all within
/// `timeout`: each address gets an even share of the time left, so that one that drops
/// packets leaves time for the next. The last error when none answers.
fn connect_any(addrs: impl Iterator<Item = std::net::SocketAddr>, timeout: Duration) -> std::io::Result<TcpStream> {
    let addrs: Vec<std::net::SocketAddr> = addrs.collect();
    let deadline = Instant::now() + timeout;
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "the name resolves to no address");
    for (i, addr) in addrs.iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no address answered in time"));
        }
        let share = (left / (addrs.len() - i) as u32).max(Duration::from_millis(1));
        match TcpStream::connect_timeout(addr, share) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

impl Stream {
    fn connect(address: &Address, timeout: Duration) -> std::io::Result<Stream> {
        Ok(match address {
            Address::Tcp(host) => Stream::Tcp(connect_any(host.to_socket_addrs()?, timeout)?),
            Address::Unix(path) => Stream::Unix(UnixStream::connect(path)?),
        })
    }

    fn set_timeouts(&self, t: Duration) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(Some(t)).and_then(|()| s.set_write_timeout(Some(t))),
            Stream::Unix(s) => s.set_read_timeout(Some(t)).and_then(|()| s.set_write_timeout(Some(t))),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

/// One request without a body (`GET`, `HEAD`, `DELETE`), answered within `timeout` in all.
/// `host` is the Host header. The error says what failed, in words for a person.
///
/// Long because one deadline covers connecting, writing and reading: the steps share the socket
/// and the time left.
pub fn request(
    address: &Address,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<Response, String> {
    let started = Instant::now();
    let left = || timeout.saturating_sub(started.elapsed()).max(Duration::from_millis(1));
    let late = |e: std::io::Error| {
        if started.elapsed() >= timeout {
            format!("no answer within {} s", timeout.as_secs_f64())
        } else {
            e.to_string()
        }
    };
    let mut s = Stream::connect(address, timeout).map_err(|e| e.to_string())?;
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("Connection: close\r\n\r\n");
    // One write: a server that answers after the first bytes and closes (an HTML page, a proxy's
    // error) must not turn into a broken pipe. Its answer is read even when the write failed.
    s.set_timeouts(left()).map_err(|e| e.to_string())?;
    let written = s.write_all(text.as_bytes());
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break Some(i + 4);
        }
        if buf.len() > 64 * 1024 {
            return Err("headers larger than 64 KiB".into());
        }
        s.set_timeouts(left()).map_err(|e| e.to_string())?;
        let n = s.read(&mut chunk).map_err(late)?;
        if n == 0 {
            break None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if let (Err(e), true) = (&written, buf.is_empty()) {
        return Err(e.to_string());
    }
    let Some(end) = end else {
        return parse_head(&String::from_utf8_lossy(&buf));
    };
    let mut response = parse_head(&String::from_utf8_lossy(&buf[..end]))?;
    let mut body = buf.split_off(end);
    if method == "HEAD" || response.status == 204 || response.status == 304 {
        return Ok(response);
    }
    let length: Option<usize> = response.header("content-length").and_then(|l| l.trim().parse().ok());
    let chunked = response.header("transfer-encoding").is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    loop {
        let complete = match length {
            _ if chunked => dechunk(&body)?.is_some(),
            Some(l) => body.len() >= l,
            None => false,
        };
        if complete {
            break;
        }
        if body.len() > MAX_BODY {
            return Err(format!("an answer larger than {} MiB", MAX_BODY >> 20));
        }
        s.set_timeouts(left()).map_err(|e| e.to_string())?;
        let n = s.read(&mut chunk).map_err(late)?;
        if n == 0 {
            if chunked || length.is_some() {
                return Err("the connection closed in the middle of the answer".into());
            }
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    response.body = match length {
        _ if chunked => dechunk(&body)?.unwrap_or_default(),
        Some(l) => {
            body.truncate(l);
            body
        }
        None => body,
    };
    Ok(response)
}

/// A chunked body decoded; None while it is incomplete.
fn dechunk(mut data: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else { return Ok(None) };
        let line = String::from_utf8_lossy(&data[..eol]);
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| format!("a bad chunk size {size_text:?}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            // Trailers are not used; the final CRLF may still be on its way.
            return Ok(Some(out));
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// The status line and headers.
pub fn parse_head(text: &str) -> Result<Response, String> {
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {:?}", status_line.chars().take(40).collect::<String>()))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Response { status, headers, body: Vec::new() })
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
pub fn query_escape(value: &str) -> String {
    escape(value, b"-._~")
}

/// `value` percent-encoded, but for ASCII letters, digits and the bytes in `safe`.
pub fn escape(value: &str, safe: &[u8]) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || safe.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback address that drops connection attempts: a listener with a full queue.
    fn unanswered() -> (std::os::fd::OwnedFd, std::net::SocketAddr, Vec<TcpStream>) {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket calls on a socket this test owns, with buffers of the right size.
        let (fd, port) = unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert!(fd >= 0);
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            assert_eq!(libc::bind(fd, &addr as *const _ as *const libc::sockaddr, len), 0);
            assert_eq!(libc::listen(fd, 0), 0);
            let mut len = len;
            assert_eq!(libc::getsockname(fd, &mut addr as *mut _ as *mut libc::sockaddr, &mut len), 0);
            (std::os::fd::OwnedFd::from_raw_fd(fd), u16::from_be(addr.sin_port))
        };
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        // Fill the queue until a connection attempt goes unanswered.
        let mut held = Vec::new();
        while let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            held.push(s);
            assert!(held.len() < 64, "the queue never filled");
        }
        (fd, addr, held)
    }

    #[test]
    fn an_address_that_drops_packets_leaves_time_for_the_next() {
        let (_fd, silent, _held) = unanswered();
        let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let t = Instant::now();
        let s = connect_any([silent, open.local_addr().unwrap()].into_iter(), Duration::from_secs(2)).unwrap();
        assert_eq!(s.peer_addr().unwrap(), open.local_addr().unwrap());
        assert!(t.elapsed() < Duration::from_millis(1800), "a share of the time, not all of it: {:?}", t.elapsed());
        // Alone, it is bounded by the whole timeout.
        let t = Instant::now();
        assert!(connect_any([silent].into_iter(), Duration::from_millis(500)).is_err());
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }

    #[test]
    fn every_address_of_a_name_is_tried() {
        let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let addrs = [closed, open.local_addr().unwrap()];
        let s = connect_any(addrs.into_iter(), Duration::from_secs(2)).unwrap();
        assert_eq!(s.peer_addr().unwrap(), open.local_addr().unwrap());
        let e = connect_any([closed].into_iter(), Duration::from_secs(2)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
        assert!(connect_any(std::iter::empty(), Duration::from_secs(2)).is_err());
    }

    #[test]
    fn heads() {
        let r = parse_head("HTTP/1.1 200 OK\r\nDocker-Content-Digest: sha256:abc\r\n\r\n").unwrap();
        assert_eq!((r.status, r.header("docker-content-digest")), (200, Some("sha256:abc")));
        let r = parse_head("HTTP/1.0 404 Not Found\r\ncontent-type: text/html\r\n\r\n").unwrap();
        assert_eq!((r.status, r.header("content-type")), (404, Some("text/html")));
        assert!(parse_head("SSH-2.0-OpenSSH\r\n").is_err());
    }

    #[test]
    fn chunked_bodies() {
        assert_eq!(dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").unwrap().unwrap(), b"abcde");
        assert_eq!(dechunk(b"3\r\nabc\r\n").unwrap(), None);
        assert_eq!(dechunk(b"3\r\nab").unwrap(), None);
        assert!(dechunk(b"zz\r\n").is_err());
    }

    #[test]
    fn query_values() {
        assert_eq!(query_escape(r#"{"reference":["a:b"]}"#), "%7B%22reference%22%3A%5B%22a%3Ab%22%5D%7D");
    }

    /// Serves one connection on a unix socket with `answer` written in `pieces`.
    fn serve_unix(pieces: Vec<&'static [u8]>) -> Utf8PathBuf {
        let dir = crate::testutil::TempDir::new("http");
        let path = dir.path().join("s.sock");
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let _dir = dir;
            let (mut s, _) = l.accept().unwrap();
            let mut seen = Vec::new();
            let mut b = [0u8; 1024];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&b[..n]),
                }
            }
            for p in pieces {
                let _ = s.write_all(p);
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(200));
        });
        path
    }

    #[test]
    fn bodies_over_a_unix_socket() {
        let t = Duration::from_secs(2);
        let p = serve_unix(vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n[1,2\r\n",
            b"1\r\n]\r\n0\r\n\r\n",
        ]);
        let r = request(&Address::Unix(p), "GET", "docker", "/x", &[], t).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"[1,2]"[..]));
        let p = serve_unix(vec![b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nno", b"pe!extra"]);
        let r = request(&Address::Unix(p), "GET", "docker", "/x", &[], t).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"nope!"[..]));
        let p = serve_unix(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort"]);
        let e = request(&Address::Unix(p), "GET", "docker", "/x", &[], t).unwrap_err();
        assert!(e.contains("closed"), "{e}");
    }

    #[test]
    fn a_silent_server_is_bounded_in_time() {
        let p = serve_unix(vec![]);
        let started = Instant::now();
        let e = request(&Address::Unix(p), "GET", "docker", "/x", &[], Duration::from_millis(100)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1), "{e}");
        let e2 = request(&Address::Unix("/nonexistent/s.sock".into()), "GET", "d", "/", &[], Duration::from_secs(1));
        assert!(e2.is_err());
    }
}
