//! The HTTP/1.x side of the tests' small servers and proxies (loopback only).

use std::future::Future;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as received: the head, then a Content-Length body.
pub struct RawRequest {
    pub method: String,
    /// Without the query.
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// Head and body, as received.
    pub bytes: Vec<u8>,
    pub body_start: usize,
}

impl RawRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn body(&self) -> &[u8] {
        &self.bytes[self.body_start..]
    }
}

/// Reads one request. `None` at EOF, on junk, or on what ausi never sends (chunked bodies,
/// `Expect`).
pub async fn read_request(stream: &mut TcpStream) -> Option<RawRequest> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let k = stream.read(&mut chunk).await.ok()?;
        if k == 0 || bytes.len() > 1 << 20 {
            return None;
        }
        bytes.extend_from_slice(&chunk[..k]);
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let mut words = head.split(' ');
    let method = words.next()?.to_owned();
    let path = words.next()?.split('?').next()?.to_owned();
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let request = RawRequest { method, path, headers, bytes: Vec::new(), body_start: head_end };
    if request.header("transfer-encoding").is_some() || request.header("expect").is_some() {
        return None;
    }
    let length: usize = match request.header("content-length") {
        Some(v) => v.parse().ok()?,
        None => 0,
    };
    while bytes.len() < head_end + length {
        let k = stream.read(&mut chunk).await.ok()?;
        if k == 0 {
            return None;
        }
        bytes.extend_from_slice(&chunk[..k]);
    }
    Some(RawRequest { bytes, ..request })
}

/// Answers with a JSON body and closes the connection.
pub async fn answer_json(client: &mut TcpStream, status: &str, body: &str) {
    let text = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(text.as_bytes()).await.ok();
    client.shutdown().await.ok();
}

/// Listens on 127.0.0.1 (a free port, returned) on a thread of its own, handing each connection
/// to `handle`, until `stopped()` is true at the next connection (the owner connects once to
/// wake it).
pub fn serve<F, Fut>(stopped: impl Fn() -> bool + Send + 'static, handle: F) -> std::net::SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                if stopped() {
                    return;
                }
                tokio::spawn(handle(stream));
            }
        });
    });
    addr
}
