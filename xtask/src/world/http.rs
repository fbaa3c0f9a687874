//! A minimal HTTP/1.1 client for the registry's manifest lookups: one `HEAD` request per TCP
//! connection, every step bounded by one deadline.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// An answer: status and headers (names in lowercase); a `HEAD` answer has no body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    headers: Vec<(String, String)>,
}

impl Response {
    /// The first value of a header; `name` in lowercase.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
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

/// One `HEAD` request to `host` (`host:port`, also the Host header), answered within `timeout`
/// in all. The error says what failed, in words for a person.
pub fn head(host: &str, path: &str, headers: &[(&str, &str)], timeout: Duration) -> Result<Response, String> {
    let started = Instant::now();
    let left = || timeout.saturating_sub(started.elapsed()).max(Duration::from_millis(1));
    let late = |e: std::io::Error| {
        if started.elapsed() >= timeout {
            format!("no answer within {} s", timeout.as_secs_f64())
        } else {
            e.to_string()
        }
    };
    let addrs = host.to_socket_addrs().map_err(|e| e.to_string())?;
    let mut s = connect_any(addrs, timeout).map_err(|e| e.to_string())?;
    let set_timeouts =
        |s: &TcpStream| s.set_read_timeout(Some(left())).and_then(|()| s.set_write_timeout(Some(left())));
    let mut text = format!("HEAD {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("Connection: close\r\n\r\n");
    // One write: a server that answers after the first bytes and closes (an HTML page, a proxy's
    // error) must not turn into a broken pipe. Its answer is read even when the write failed.
    set_timeouts(&s).map_err(|e| e.to_string())?;
    let written = s.write_all(text.as_bytes());
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err("headers larger than 64 KiB".into());
        }
        set_timeouts(&s).map_err(|e| e.to_string())?;
        let n = s.read(&mut chunk).map_err(late)?;
        if n == 0 {
            break buf.len();
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if let (Err(e), true) = (&written, buf.is_empty()) {
        return Err(e.to_string());
    }
    parse_head(&String::from_utf8_lossy(&buf[..end]))
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
    Ok(Response { status, headers })
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

    /// Serves one connection on loopback: reads the request, then writes `answer` (or
    /// nothing) and waits.
    fn serve(answer: &'static [u8]) -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut seen = Vec::new();
            let mut b = [0u8; 1024];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&b[..n]),
                }
            }
            let _ = s.write_all(answer);
            std::thread::sleep(Duration::from_millis(300));
        });
        addr
    }

    #[test]
    fn a_head_request_reads_the_status_and_headers() {
        let t = Duration::from_secs(2);
        let host = serve(b"HTTP/1.1 200 OK\r\nDocker-Content-Digest: sha256:abc\r\nContent-Length: 99\r\n\r\n");
        let r = head(&host, "/v2/x/manifests/1", &[], t).unwrap();
        assert_eq!((r.status, r.header("docker-content-digest")), (200, Some("sha256:abc")));
    }

    #[test]
    fn a_silent_server_is_bounded_in_time() {
        let host = serve(b"");
        let started = Instant::now();
        let e = head(&host, "/x", &[], Duration::from_millis(100)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1), "{e}");
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        assert!(head(&closed, "/", &[], Duration::from_secs(1)).is_err());
    }
}
