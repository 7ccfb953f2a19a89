//! Asking nameservers directly whether they serve the challenge values.
//!
//! A CA validates against the authoritative servers, not against a provider's
//! API, so certkeeper does not tell the CA "ready" until every server it asks
//! returns every expected value. Queries go straight to each server over UDP
//! (TCP when the answer is truncated), bypassing any caching resolver.

use super::{DnsError, TxtRecord};
use crate::config::domain::normalize_name;
use hickory_proto::op::{Edns, Message, MessageType, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;

const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
const QUERY_ATTEMPTS: u32 = 3;

/// One question to one server that got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Name(#[source] hickory_proto::ProtoError),
    #[error("{0}")]
    Message(#[source] hickory_proto::ProtoError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("timed out")]
    TimedOut,
}

/// Nameserver names that did not turn into addresses.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{host}: {source}")]
    Lookup {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no nameserver addresses")]
    Nothing,
}

/// Waits until every server returns every value, or the timeout passes.
pub async fn wait_until_visible(
    servers: &[SocketAddr],
    records: &[TxtRecord],
    limit: Duration,
    cancel: &CancellationToken,
) -> Result<(), DnsError> {
    let mut wanted: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for r in records {
        wanted.entry(&r.name).or_default().insert(&r.value);
    }
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        let mut lagging = Vec::new();
        for server in servers {
            for (name, values) in &wanted {
                match query_txt(*server, name).await {
                    Ok(seen) if values.iter().all(|v| seen.iter().any(|s| s == v)) => {}
                    Ok(seen) => lagging.push(format!("{server} returned {seen:?} for {name}")),
                    Err(e) => lagging.push(format!("{server} did not answer for {name}: {e}")),
                }
            }
        }
        if lagging.is_empty() {
            return Ok(());
        }
        if started.elapsed() + delay > limit {
            return Err(DnsError::NotPropagated {
                waited_secs: started.elapsed().as_secs(),
                details: lagging.join("; "),
            });
        }
        tokio::select! {
            _ = cancel.cancelled() => return Err(DnsError::Cancelled),
            _ = sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// The TXT strings at `name` as one server sees them (multi-string values joined).
pub async fn query_txt(server: SocketAddr, name: &str) -> Result<Vec<String>, QueryError> {
    let response = query(server, name, RecordType::TXT, false).await?;
    Ok(response
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|part| String::from_utf8_lossy(part).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect())
}

/// Questions in flight at once, across every order of a run: with every due
/// certificate's order in flight, a thousand CNAME and propagation lookups
/// at once would swamp a small resolver (or a VPC resolver's packet limit)
/// and time out, where queued they are answered in turn.
static IN_FLIGHT: std::sync::LazyLock<tokio::sync::Semaphore> =
    std::sync::LazyLock::new(|| tokio::sync::Semaphore::new(32));

/// Pauses before asking a one-off question again after it timed out (each
/// try is `QUERY_ATTEMPTS` datagrams): a resolver swamped for a few seconds
/// must not fail an order whose lookup is asked once (CNAME before the
/// records are written), about 25 s in all before giving up.
const PATIENT_PAUSES: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(3),
    Duration::from_secs(7),
];

/// [`query`] with recursion, asked again after a pause while it times out.
async fn query_patiently(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
) -> Result<Message, QueryError> {
    let mut pauses = PATIENT_PAUSES.iter();
    loop {
        match query(server, name, rtype, true).await {
            Err(QueryError::TimedOut) => match pauses.next() {
                Some(pause) => {
                    tracing::debug!(event = "dns.query.retry", name = %name, pause_ms = pause.as_millis() as u64);
                    tokio::time::sleep(*pause).await;
                }
                None => return Err(QueryError::TimedOut),
            },
            other => return other,
        }
    }
}

/// One question to one server (UDP, then TCP if the answer is truncated).
pub async fn query(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    recursion: bool,
) -> Result<Message, QueryError> {
    let _turn = IN_FLIGHT.acquire().await.expect("never closed");
    let fqdn = Name::from_ascii(format!("{}.", normalize_name(name))).map_err(QueryError::Name)?;
    let mut request = Message::query();
    request.metadata.recursion_desired = recursion;
    request.add_query(Query::query(fqdn, rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    request.set_edns(edns);
    let bytes = request.to_vec().map_err(QueryError::Message)?;
    // A lost datagram is asked again, as a stub resolver would: one
    // dropped answer must not fail a certificate.
    let mut attempt = 1;
    let mut response = loop {
        match udp_exchange(server, &bytes, request.metadata.id).await {
            Err(QueryError::TimedOut) if attempt < QUERY_ATTEMPTS => attempt += 1,
            other => break other?,
        }
    };
    if response.metadata.truncation {
        response = tcp_exchange(server, &bytes).await?;
    }
    Ok(response)
}

async fn udp_exchange(server: SocketAddr, bytes: &[u8], id: u16) -> Result<Message, QueryError> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(server).await?;
    socket.send(bytes).await?;
    let mut buf = vec![0u8; 65535];
    let deadline = Instant::now() + QUERY_TIMEOUT;
    loop {
        let n = timeout(
            deadline.saturating_duration_since(Instant::now()),
            socket.recv(&mut buf),
        )
        .await
        .map_err(|_| QueryError::TimedOut)??;
        // Ignore stray datagrams that are not the answer to our question.
        if let Ok(msg) = Message::from_vec(&buf[..n])
            && msg.metadata.id == id
            && msg.metadata.message_type == MessageType::Response
        {
            return Ok(msg);
        }
    }
}

async fn tcp_exchange(server: SocketAddr, bytes: &[u8]) -> Result<Message, QueryError> {
    let buf = timeout(QUERY_TIMEOUT, exchange_tcp(server, bytes))
        .await
        .map_err(|_| QueryError::TimedOut)??;
    Message::from_vec(&buf).map_err(|e| QueryError::Message(e.into()))
}

/// One DNS message over TCP (two-byte length prefix each way).
pub async fn exchange_tcp(server: SocketAddr, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(server).await?;
    let len = u16::try_from(bytes.len()).map_err(std::io::Error::other)?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(bytes).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Turns nameserver host names (port 53) or `ip:port` into addresses.
pub async fn resolve_servers(hosts: &[String]) -> Result<Vec<SocketAddr>, ResolveError> {
    let mut out = Vec::new();
    for host in hosts {
        if let Ok(addr) = host.parse::<SocketAddr>() {
            out.push(addr);
            continue;
        }
        let host = host.trim_end_matches('.');
        let addrs = tokio::net::lookup_host((host, 53))
            .await
            .map_err(|source| ResolveError::Lookup {
                host: host.to_string(),
                source,
            })?;
        // One address per server is enough; prefer IPv4 for reachability.
        let mut addrs: Vec<SocketAddr> = addrs.collect();
        addrs.sort_by_key(|a| !a.is_ipv4());
        if let Some(a) = addrs.first() {
            out.push(*a);
        }
    }
    if out.is_empty() {
        return Err(ResolveError::Nothing);
    }
    Ok(out)
}

/// Follows a CNAME chain at `name` (at most 8 links) and returns the final
/// target, or `None` when `name` is no CNAME. Asks `servers` (the override),
/// or else the system's resolvers from /etc/resolv.conf.
pub async fn follow_cname(servers: &[SocketAddr], name: &str) -> Result<Option<String>, DnsError> {
    let servers = if servers.is_empty() {
        system_resolvers()
    } else {
        servers.to_vec()
    };
    let Some(server) = servers.first().copied() else {
        return Ok(None);
    };
    let mut current = normalize_name(name);
    let mut followed = false;
    for _ in 0..8 {
        let response = query_patiently(server, &current, RecordType::CNAME)
            .await
            .map_err(|e| DnsError::Nameservers {
                name: current.clone(),
                message: format!("CNAME lookup at {server}: {e}"),
            })?;
        let target = response.answers.iter().find_map(|r| match &r.data {
            RData::CNAME(c) if normalize_name(&r.name.to_ascii()) == current => {
                Some(normalize_name(&c.0.to_ascii()))
            }
            _ => None,
        });
        match target {
            Some(t) => {
                current = t;
                followed = true;
            }
            None => return Ok(followed.then_some(current)),
        }
    }
    Err(DnsError::Nameservers {
        name: name.to_string(),
        message: "CNAME chain longer than 8 links".into(),
    })
}

fn system_resolvers() -> Vec<SocketAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}
