//! A fault-injecting HTTP proxy for the AWS endpoint: certkeeper talks to
//! moto through it, and a test decides, request by request, which ones get
//! a 500, a slow answer, no answer at all, a dropped connection, or an
//! endpoint that is down (connection refused).
//!
//! "moto stopped" is played here, by closing the proxy's listener, not by
//! killing moto: moto keeps its state in memory, and a restarted moto would
//! have forgotten the zones and objects the test checks afterwards. To
//! certkeeper the two are the same: connections to the AWS endpoint are
//! refused. The Route53-backed DNS responder talks to moto directly, as
//! Route53's nameservers stay up when its API is unreachable.
//!
//! Requests are read with their bodies (Content-Length or chunked) and
//! forwarded one per upstream connection with `Connection: close`, so the
//! proxy never has to frame moto's responses: it relays them to EOF.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// What the proxy does to a request a rule matches.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer this status with an S3/AWS style XML error body.
    Status(u16),
    /// Forward it, but only after this long.
    Delay(Duration),
    /// Read it and never answer (the connection stays open).
    Hang,
    /// Read it and close the connection without an answer.
    Close,
    /// Forward it and relay the answer, then go down: the listener closes
    /// and every later connection is refused until `up()`.
    ThenDown,
}

/// Which requests a rule applies to; `None` fields match anything.
#[derive(Clone, Debug, Default)]
pub struct Match {
    pub method: Option<&'static str>,
    /// A substring of the request target (path and query).
    pub path: Option<String>,
    /// A substring of the request body.
    pub body: Option<String>,
}

impl Match {
    /// S3 requests (path-style `/<bucket>/...`), any method.
    pub fn s3(bucket: &str) -> Match {
        Match {
            path: Some(format!("/{bucket}")),
            ..Match::default()
        }
    }

    /// S3 PutObject requests into `bucket`.
    pub fn s3_put(bucket: &str) -> Match {
        Match {
            method: Some("PUT"),
            ..Match::s3(bucket)
        }
    }

    /// Route53 ChangeResourceRecordSets whose batch holds `action`
    /// (UPSERT, CREATE, DELETE).
    pub fn route53_change(action: &str) -> Match {
        Match {
            method: Some("POST"),
            path: Some("/rrset".into()),
            body: Some(format!("<Action>{action}</Action>")),
        }
    }
}

struct Rule {
    matches: Match,
    fault: Fault,
    /// How many more requests it applies to; `None`: all of them.
    remaining: Option<u32>,
}

#[derive(Default)]
struct State {
    rules: Mutex<Vec<Rule>>,
    /// One line per request: `METHOD target -> what happened`.
    log: Mutex<Vec<String>>,
    down: AtomicBool,
    changed: Notify,
}

pub struct FaultProxy {
    pub port: u16,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream_port: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let upstream: SocketAddr = ([127, 0, 0, 1], upstream_port).into();
        let state = Arc::new(State::default());
        let task = tokio::spawn(serve(listener, port, upstream, state.clone()));
        FaultProxy { port, state, task }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Applies `fault` to the next `times` matching requests (`None`: all).
    pub fn inject(&self, matches: Match, fault: Fault, times: Option<u32>) {
        self.state.rules.lock().unwrap().push(Rule {
            matches,
            fault,
            remaining: times,
        });
    }

    /// Drops every rule; requests are forwarded untouched again.
    pub fn clear(&self) {
        self.state.rules.lock().unwrap().clear();
    }

    /// The endpoint refuses connections from now on.
    pub fn down(&self) {
        self.state.down.store(true, Ordering::SeqCst);
        self.state.changed.notify_waiters();
    }

    /// The endpoint accepts connections again (same port).
    pub fn up(&self) {
        self.state.down.store(false, Ordering::SeqCst);
        self.state.changed.notify_waiters();
    }

    pub fn is_down(&self) -> bool {
        self.state.down.load(Ordering::SeqCst)
    }

    /// Every request seen so far, `METHOD target -> outcome`.
    pub fn log(&self) -> Vec<String> {
        self.state.log.lock().unwrap().clone()
    }

    /// How many requests got `outcome` (e.g. "500", "hang", "close").
    pub fn count(&self, outcome: &str) -> usize {
        let suffix = format!("-> {outcome}");
        self.log().iter().filter(|l| l.ends_with(&suffix)).count()
    }
}

async fn serve(mut listener: TcpListener, port: u16, upstream: SocketAddr, state: Arc<State>) {
    loop {
        if state.down.load(Ordering::SeqCst) {
            // Closing the listener is what makes connects fail with
            // "connection refused", as with a stopped server.
            drop(listener);
            while state.down.load(Ordering::SeqCst) {
                let changed = state.changed.notified();
                if !state.down.load(Ordering::SeqCst) {
                    break;
                }
                changed.await;
            }
            listener = loop {
                match TcpListener::bind(("127.0.0.1", port)).await {
                    Ok(l) => break l,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            };
        }
        let changed = state.changed.notified();
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((client, _)) = accepted {
                    tokio::spawn(connection(client, upstream, state.clone()));
                }
            }
            _ = changed => {}
        }
    }
}

/// One client connection: requests one after the other (keep-alive).
async fn connection(mut client: TcpStream, upstream: SocketAddr, state: Arc<State>) {
    let mut buffered = Vec::new();
    loop {
        let Some(request) = read_request(&mut client, &mut buffered).await else {
            return;
        };
        if state.down.load(Ordering::SeqCst) {
            return;
        }
        let fault = pick(&state, &request);
        let label = format!("{} {}", request.method, request.target);
        let outcome = match fault {
            Some(Fault::Status(code)) => {
                let body = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code><Message>injected {code}</Message></Error>"
                );
                let answer = format!(
                    "HTTP/1.1 {code} Injected\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = client.write_all(answer.as_bytes()).await;
                code.to_string()
            }
            Some(Fault::Hang) => {
                record(&state, &label, "hang");
                // Holds the connection until the client gives up.
                let mut sink = [0u8; 1024];
                while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
                return;
            }
            Some(Fault::Close) => {
                record(&state, &label, "close");
                return;
            }
            Some(Fault::Delay(d)) => {
                tokio::time::sleep(d).await;
                forward(&mut client, upstream, &request).await;
                "delayed".to_string()
            }
            Some(Fault::ThenDown) => {
                forward(&mut client, upstream, &request).await;
                state.down.store(true, Ordering::SeqCst);
                state.changed.notify_waiters();
                record(&state, &label, "then-down");
                return;
            }
            None => {
                forward(&mut client, upstream, &request).await;
                "ok".to_string()
            }
        };
        record(&state, &label, &outcome);
    }
}

fn record(state: &State, label: &str, outcome: &str) {
    state
        .log
        .lock()
        .unwrap()
        .push(format!("{label} -> {outcome}"));
}

fn pick(state: &State, request: &Request) -> Option<Fault> {
    let mut rules = state.rules.lock().unwrap();
    let body = String::from_utf8_lossy(&request.body);
    let rule = rules.iter_mut().find(|r| {
        r.remaining != Some(0)
            && r.matches.method.is_none_or(|m| m == request.method)
            && r.matches
                .path
                .as_deref()
                .is_none_or(|p| request.target.contains(p))
            && r.matches.body.as_deref().is_none_or(|b| body.contains(b))
    })?;
    if let Some(n) = rule.remaining.as_mut() {
        *n -= 1;
    }
    Some(rule.fault.clone())
}

struct Request {
    method: String,
    target: String,
    /// The head as received, up to and without the final blank line.
    head: String,
    body: Vec<u8>,
}

/// Reads one request (head and body); `None` at EOF or on garbage.
async fn read_request(client: &mut TcpStream, buffered: &mut Vec<u8>) -> Option<Request> {
    let head_end = loop {
        if let Some(i) = find(buffered, b"\r\n\r\n") {
            break i;
        }
        fill(client, buffered).await?;
    };
    let head = String::from_utf8_lossy(&buffered[..head_end]).into_owned();
    buffered.drain(..head_end + 4);
    let mut words = head.split_whitespace();
    let method = words.next()?.to_string();
    let target = words.next()?.to_string();
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        read_chunked(client, buffered).await?
    } else {
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buffered.len() < len {
            fill(client, buffered).await?;
        }
        buffered.drain(..len).collect()
    };
    Some(Request {
        method,
        target,
        head,
        body,
    })
}

/// A chunked body, re-framed as plain bytes.
async fn read_chunked(client: &mut TcpStream, buffered: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = find(buffered, b"\r\n") {
                break i;
            }
            fill(client, buffered).await?;
        };
        let size_text = String::from_utf8_lossy(&buffered[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        buffered.drain(..line_end + 2);
        if size == 0 {
            // Trailers, then the blank line.
            loop {
                if let Some(i) = find(buffered, b"\r\n") {
                    let blank = i == 0;
                    buffered.drain(..i + 2);
                    if blank {
                        return Some(body);
                    }
                } else {
                    fill(client, buffered).await?;
                }
            }
        }
        while buffered.len() < size + 2 {
            fill(client, buffered).await?;
        }
        body.extend(buffered.drain(..size));
        buffered.drain(..2);
    }
}

async fn fill(client: &mut TcpStream, buffered: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 16 * 1024];
    match client.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buffered.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Sends `request` to moto on a connection of its own and relays the whole
/// answer; a failure to reach moto closes the client's connection.
async fn forward(client: &mut TcpStream, upstream: SocketAddr, request: &Request) {
    let Ok(mut up) = TcpStream::connect(upstream).await else {
        let _ = client.shutdown().await;
        return;
    };
    let mut head = String::new();
    for (i, line) in request.head.lines().enumerate() {
        let name = line.split(':').next().unwrap_or("").trim();
        if i > 0
            && [
                "connection",
                "transfer-encoding",
                "content-length",
                "keep-alive",
            ]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
        {
            continue;
        }
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        request.body.len()
    ));
    if up.write_all(head.as_bytes()).await.is_err() || up.write_all(&request.body).await.is_err() {
        let _ = client.shutdown().await;
        return;
    }
    let mut answer = Vec::new();
    let _ = up.read_to_end(&mut answer).await;
    let _ = client.write_all(&answer).await;
}
