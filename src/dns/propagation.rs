//! Asking nameservers directly whether they serve the challenge values.
//!
//! A CA validates against the authoritative servers, not against a provider's
//! API, so certkeeper does not tell the CA "ready" until every server it asks
//! returns every expected value. Queries go straight to each server over UDP
//! (TCP when the answer is truncated), bypassing any caching resolver.

use super::{DnsError, TxtRecord, normalize_name};
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
pub async fn query_txt(server: SocketAddr, name: &str) -> Result<Vec<String>, String> {
    let fqdn = Name::from_ascii(format!("{}.", normalize_name(name))).map_err(|e| e.to_string())?;
    let mut request = Message::query();
    request.metadata.recursion_desired = false;
    request.add_query(Query::query(fqdn, RecordType::TXT));
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    request.set_edns(edns);
    let bytes = request.to_vec().map_err(|e| e.to_string())?;

    let mut response = udp_exchange(server, &bytes, request.metadata.id).await?;
    if response.metadata.truncation {
        response = tcp_exchange(server, &bytes).await?;
    }
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

async fn udp_exchange(server: SocketAddr, bytes: &[u8], id: u16) -> Result<Message, String> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let socket = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
    socket.connect(server).await.map_err(|e| e.to_string())?;
    socket.send(bytes).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 65535];
    let deadline = Instant::now() + QUERY_TIMEOUT;
    loop {
        let n = timeout(
            deadline.saturating_duration_since(Instant::now()),
            socket.recv(&mut buf),
        )
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
        // Ignore stray datagrams that are not the answer to our question.
        if let Ok(msg) = Message::from_vec(&buf[..n])
            && msg.metadata.id == id
            && msg.metadata.message_type == MessageType::Response
        {
            return Ok(msg);
        }
    }
}

async fn tcp_exchange(server: SocketAddr, bytes: &[u8]) -> Result<Message, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(server).await?;
        let len = u16::try_from(bytes.len()).map_err(std::io::Error::other)?;
        stream.write_all(&len.to_be_bytes()).await?;
        stream.write_all(bytes).await?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await?;
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        stream.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = timeout(QUERY_TIMEOUT, exchange)
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    Message::from_vec(&buf).map_err(|e| e.to_string())
}

/// Turns nameserver host names (port 53) or `ip:port` into addresses.
pub async fn resolve_servers(hosts: &[String]) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for host in hosts {
        if let Ok(addr) = host.parse::<SocketAddr>() {
            out.push(addr);
            continue;
        }
        let host = host.trim_end_matches('.');
        let addrs = tokio::net::lookup_host((host, 53))
            .await
            .map_err(|e| format!("{host}: {e}"))?;
        // One address per server is enough; prefer IPv4 for reachability.
        let mut addrs: Vec<SocketAddr> = addrs.collect();
        addrs.sort_by_key(|a| !a.is_ipv4());
        if let Some(a) = addrs.first() {
            out.push(*a);
        }
    }
    if out.is_empty() {
        return Err("no nameserver addresses".into());
    }
    Ok(out)
}
