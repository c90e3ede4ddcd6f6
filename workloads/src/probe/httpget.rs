//! The agent's built-in HTTP GET: curl's timing phases without a process per request.
//!
//! A `curl` process costs its node about 10 ms of CPU to start. Agents that run several
//! GETs at once on a small CPU share then queue behind each other's process starts, and the
//! measured time is the agent's CPU, not the network (docs/probes.md, experiment 2). This
//! client does one HTTP/1.1 GET on a fresh connection (`Connection: close`), reads the body
//! to the end, and reports the phases curl's `%{json}` write-out does, from the process's
//! monotonic clock (dilated in a node, like curl's).

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::parse::HttpTiming;

/// curl's exit codes for the same failures, so results read alike from either client.
const COULDNT_RESOLVE: i32 = 6;
const COULDNT_CONNECT: i32 = 7;
const WEIRD_REPLY: i32 = 8;
const SEND_ERROR: i32 = 55;
const RECV_ERROR: i32 = 56;
const TIMED_OUT: i32 = 28;

/// GETs `http://host:port{path}` within `deadline`; failures come back as a timing with a
/// non-zero `exit_code` and the phases reached so far, as curl reports them.
pub async fn get(host: &str, port: u16, path: &str, deadline: Duration) -> HttpTiming {
    let t0 = Instant::now();
    let mut timing = HttpTiming {
        status: 0,
        exit_code: 0,
        error: None,
        namelookup_ms: 0.0,
        connect_ms: 0.0,
        pretransfer_ms: 0.0,
        starttransfer_ms: 0.0,
        total_ms: 0.0,
        size_download: 0,
        remote_ip: String::new(),
    };
    let outcome = tokio::time::timeout(deadline, exchange(host, port, path, t0, &mut timing)).await;
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(f)) => Some(f),
        Err(_) => Some((TIMED_OUT, format!("no complete answer within {deadline:?}"))),
    };
    if let Some((code, message)) = failure {
        timing.exit_code = code;
        timing.error = Some(message);
    }
    timing.total_ms = ms(t0);
    timing
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

async fn exchange(
    host: &str,
    port: u16,
    path: &str,
    t0: Instant,
    timing: &mut HttpTiming,
) -> Result<(), (i32, String)> {
    let addr = tokio::net::lookup_host((host, port))
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or((COULDNT_RESOLVE, format!("could not resolve host: {host}")))?;
    timing.namelookup_ms = ms(t0);
    timing.remote_ip = addr.ip().to_string();
    let mut stream =
        TcpStream::connect(addr).await.map_err(|e| (COULDNT_CONNECT, format!("connect to {addr}: {e}")))?;
    // One request, one segment: Nagle would otherwise hold nothing here, but be explicit.
    let _ = stream.set_nodelay(true);
    timing.connect_ms = ms(t0);
    timing.pretransfer_ms = timing.connect_ms;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: diorama-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| (SEND_ERROR, format!("send to {addr}: {e}")))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = vec![0u8; 16 * 1024];
    let mut body = 0u64;
    let mut header_end = None;
    loop {
        let n = stream.read(&mut buf).await.map_err(|e| (RECV_ERROR, format!("receive from {addr}: {e}")))?;
        if n == 0 {
            break;
        }
        if timing.starttransfer_ms == 0.0 {
            timing.starttransfer_ms = ms(t0);
        }
        match header_end {
            Some(_) => body += n as u64,
            None => {
                head.extend_from_slice(&buf[..n]);
                if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                    header_end = Some(end + 4);
                    body += (head.len() - end - 4) as u64;
                    timing.status = status(&head[..end])
                        .ok_or((WEIRD_REPLY, format!("{addr} answered something other than HTTP")))?;
                }
            }
        }
    }
    if header_end.is_none() {
        return Err((RECV_ERROR, format!("{addr} closed the connection before a whole response header")));
    }
    timing.size_download = body;
    Ok(())
}

/// The status code of an HTTP/1.x status line.
fn status(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\r').next()?;
    let text = std::str::from_utf8(line).ok()?;
    let mut parts = text.split(' ');
    parts.next().filter(|v| v.starts_with("HTTP/1."))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that answers one connection with `reply`, then closes it.
    async fn serve_once(reply: &'static [u8]) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = vec![0u8; 4096];
            let _ = s.read(&mut req).await;
            s.write_all(reply).await.unwrap();
        });
        port
    }

    #[tokio::test]
    async fn a_get_reports_status_size_and_ordered_phases() {
        let port = serve_once(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello").await;
        let t = get("127.0.0.1", port, "/", Duration::from_secs(5)).await;
        assert_eq!((t.status, t.exit_code, t.size_download), (200, 0, 5), "{t:?}");
        assert_eq!(t.remote_ip, "127.0.0.1");
        assert!(t.namelookup_ms <= t.connect_ms && t.connect_ms <= t.starttransfer_ms, "{t:?}");
        assert!(t.starttransfer_ms <= t.total_ms, "{t:?}");
    }

    #[tokio::test]
    async fn failures_carry_curl_s_codes() {
        let port = serve_once(b"SSH-2.0-OpenSSH\r\n\r\n").await;
        let t = get("127.0.0.1", port, "/", Duration::from_secs(5)).await;
        assert_eq!(t.exit_code, WEIRD_REPLY, "{t:?}");
        // A port nobody listens on: bind one, learn it, close it.
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        let t = get("127.0.0.1", closed, "/", Duration::from_secs(5)).await;
        assert_eq!((t.exit_code, t.status), (COULDNT_CONNECT, 0), "{t:?}");
        let t = get("no-such-host.invalid", 80, "/", Duration::from_secs(5)).await;
        assert_eq!(t.exit_code, COULDNT_RESOLVE, "{t:?}");
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let _hold = tokio::spawn(async move {
            let (_s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        let t = get("127.0.0.1", port, "/", Duration::from_millis(200)).await;
        assert_eq!(t.exit_code, TIMED_OUT, "{t:?}");
        assert!(t.total_ms >= 200.0, "{t:?}");
    }

    #[test]
    fn status_lines() {
        assert_eq!(status(b"HTTP/1.1 404 Not Found"), Some(404));
        assert_eq!(status(b"HTTP/1.0 200 OK\r\nServer: x"), Some(200));
        assert_eq!(status(b"ICY 200 OK"), None);
        assert_eq!(status(b"HTTP/1.1 abc"), None);
    }
}
