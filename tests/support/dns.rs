//! A DNS responder backed by moto's Route53: every query is answered from
//! the hosted zones as they are at that moment (TXT, NS, SOA), so what Pebble
//! and certkeeper's propagation check see is exactly what went through the
//! Route53 API.

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{CNAME, NS, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;

pub struct Route53Dns {
    pub addr: SocketAddr,
    pub queries: Arc<AtomicU64>,
    /// Names answered with NXDOMAIN whatever Route53 holds (fault injection:
    /// a nameserver that never sees the record).
    hidden: Arc<Mutex<HashSet<String>>>,
    /// Zones answered by another server (BIND), as a resolver would.
    forwards: Arc<Mutex<Vec<(String, SocketAddr)>>>,
    /// Fault injection: which queries get no answer at all, and how long
    /// every answer waits.
    losses: Arc<Mutex<Losses>>,
    delay_ms: Arc<AtomicU64>,
    /// Queries dropped so far.
    pub dropped: Arc<AtomicU64>,
    /// Keep the zone list between queries (see `cache_zones`).
    cache_zones: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Route53Dns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Route53Dns {
    pub async fn start(route53: aws_sdk_route53::Client) -> Route53Dns {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind dns"));
        let addr = socket.local_addr().expect("addr");
        let queries = Arc::new(AtomicU64::new(0));
        let counter = queries.clone();
        let hidden: Arc<Mutex<HashSet<String>>> = Arc::default();
        let hide = hidden.clone();
        let forwards: Arc<Mutex<Vec<(String, SocketAddr)>>> = Arc::default();
        let fwd = forwards.clone();
        let losses: Arc<Mutex<Losses>> = Arc::default();
        let delay_ms = Arc::new(AtomicU64::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let (lose, delay, dropped_count) = (losses.clone(), delay_ms.clone(), dropped.clone());
        let zones: Arc<Zones> = Arc::default();
        let cache_zones = Arc::new(AtomicBool::new(false));
        let cache = cache_zones.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let Ok(request) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                if let Some(q) = request.queries.first()
                    && lose
                        .lock()
                        .unwrap()
                        .drops(&norm(&q.name().to_ascii()), q.query_type())
                {
                    dropped_count.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let wait = std::time::Duration::from_millis(delay.load(Ordering::Relaxed));
                let (socket, route53, hide, fwd, zones, cache) = (
                    socket.clone(),
                    route53.clone(),
                    hide.clone(),
                    fwd.clone(),
                    zones.clone(),
                    cache.clone(),
                );
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    let response =
                        respond(&route53, &request, &hide, &fwd, &zones, &cache, 0).await;
                    if let Ok(bytes) = response.to_vec() {
                        let _ = socket.send_to(&bytes, peer).await;
                    }
                });
            }
        });
        Route53Dns {
            addr,
            queries,
            hidden,
            forwards,
            losses,
            delay_ms,
            dropped,
            cache_zones,
            task,
        }
    }

    /// Keeps the zone list between queries (for the bench, where moto is
    /// the bottleneck); only for a fixed set of zones.
    #[allow(dead_code)] // only the bench uses it
    pub fn cache_zones(&self) {
        self.cache_zones.store(true, Ordering::Relaxed);
    }

    /// From now on, the first query for every name and type gets no
    /// answer (a lossy path: whoever asks must ask again).
    pub fn lose_first_queries(&self) {
        self.losses.lock().unwrap().first_of_each = true;
    }

    /// The `nth` query (1-based, counted from now) of `rtype` for `name`
    /// gets no answer.
    pub fn lose_query(&self, name: &str, rtype: RecordType, nth: u64) {
        let mut losses = self.losses.lock().unwrap();
        let entry = losses.seen.entry((norm(name), rtype)).or_default();
        entry.1.insert(entry.0 + nth);
    }

    /// From now on, hold every answer this long.
    pub fn delay(&self, d: std::time::Duration) {
        self.delay_ms.store(d.as_millis() as u64, Ordering::Relaxed);
    }

    /// From now on, relay queries for names in `zone` to `server`.
    pub fn forward(&self, zone: &str, server: SocketAddr) {
        self.forwards.lock().unwrap().push((norm(zone), server));
    }

    /// From now on, answer NXDOMAIN for `name`.
    pub fn hide(&self, name: &str) {
        self.hidden.lock().unwrap().insert(norm(name));
    }

    /// Serves `name` again after `hide`.
    pub fn show(&self, name: &str) {
        self.hidden.lock().unwrap().remove(&norm(name));
    }
}

/// Which queries the responder drops.
#[derive(Default)]
struct Losses {
    first_of_each: bool,
    /// Per (name, type): queries seen, and the numbers to drop.
    seen: std::collections::HashMap<(String, RecordType), (u64, HashSet<u64>)>,
}

impl Losses {
    fn drops(&mut self, name: &str, rtype: RecordType) -> bool {
        let entry = self.seen.entry((name.to_string(), rtype)).or_default();
        entry.0 += 1;
        (self.first_of_each && entry.0 == 1) || entry.1.contains(&entry.0)
    }
}

fn norm(name: &str) -> String {
    name.trim_end_matches('.')
        .replace("\\052", "*")
        .to_ascii_lowercase()
}

async fn answer(
    route53: &aws_sdk_route53::Client,
    request: &Message,
    hidden: &Mutex<HashSet<String>>,
    zones: &Zones,
    cache_zones: &AtomicBool,
) -> Message {
    let mut response = Message::response(request.metadata.id, OpCode::Query);
    response.metadata.message_type = MessageType::Response;
    response.metadata.authoritative = true;
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    let Some(query) = request.queries.first().cloned() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return response;
    };
    response.add_query(query.clone());
    let qname = norm(&query.name().to_ascii());
    let qtype = query.query_type();
    if hidden.lock().unwrap().contains(&qname) {
        response.metadata.response_code = ResponseCode::NXDomain;
        return response;
    }

    // With `cache_zones` (the bench: moto is its bottleneck) the zone list
    // is read again only when no cached zone holds the name, so a zone
    // created later under a cached one would go unseen: tests that create
    // zones as they go leave it off. The records always come from Route53.
    let find = |zones: &[(String, String)]| {
        zones
            .iter()
            .filter(|(apex, _)| qname == *apex || qname.ends_with(&format!(".{apex}")))
            .max_by_key(|(apex, _)| apex.len())
            .cloned()
    };
    let mut zone = if cache_zones.load(Ordering::Relaxed) {
        find(&zones.lock().unwrap())
    } else {
        None
    };
    if zone.is_none() {
        let Ok(list) = route53.list_hosted_zones().send().await else {
            response.metadata.response_code = ResponseCode::ServFail;
            return response;
        };
        let fresh: Vec<(String, String)> = list
            .hosted_zones()
            .iter()
            .map(|z| (norm(z.name()), z.id().to_string()))
            .collect();
        zone = find(&fresh);
        *zones.lock().unwrap() = fresh;
    }
    let Some((apex, zone_id)) = zone else {
        response.metadata.response_code = ResponseCode::Refused;
        return response;
    };
    // Only the sets at the name: a zone of thousands of challenge names
    // listed whole for every query made this responder the bottleneck.
    let Ok(sets) = route53
        .list_resource_record_sets()
        .hosted_zone_id(&zone_id)
        .start_record_name(format!("{qname}."))
        .max_items(20)
        .send()
        .await
    else {
        // Perhaps the zone is gone: list the zones again next time.
        zones.lock().unwrap().clear();
        response.metadata.response_code = ResponseCode::ServFail;
        return response;
    };
    let owner = query.name().clone();
    let at_name: Vec<_> = sets
        .resource_record_sets()
        .iter()
        .filter(|s| norm(s.name()) == qname)
        .collect();
    for set in &at_name {
        let ttl = set.ttl().unwrap_or(60) as u32;
        let rtype = set.r#type().as_str();
        for rr in set.resource_records() {
            let data = match (rtype, qtype) {
                ("TXT", RecordType::TXT) => RData::TXT(TXT::new(txt_strings(rr.value()))),
                ("NS", RecordType::NS) => match Name::from_ascii(rr.value()) {
                    Ok(n) => RData::NS(NS(n)),
                    Err(_) => continue,
                },
                ("CNAME", _) => match Name::from_ascii(rr.value()) {
                    Ok(n) => RData::CNAME(CNAME(n)),
                    Err(_) => continue,
                },
                _ => continue,
            };
            response.add_answer(Record::from_rdata(owner.clone(), ttl, data));
        }
    }
    // moto's SOA value is not a real SOA; synthesize one for the apex.
    let soa = soa_record(&apex);
    if qtype == RecordType::SOA && qname == apex {
        response.add_answer(soa);
    } else if response.answers.is_empty() {
        if at_name.is_empty() && qname != apex {
            response.metadata.response_code = ResponseCode::NXDomain;
        }
        response.authorities.push(soa);
    }
    response
}

type Forwards = Mutex<Vec<(String, SocketAddr)>>;
/// Cached hosted zones: (apex, zone id).
type Zones = Mutex<Vec<(String, String)>>;

/// Answers from moto, or relays to a forward zone's server; a CNAME found in
/// moto is chased like a resolver would, so the answer holds the chain.
fn respond<'a>(
    route53: &'a aws_sdk_route53::Client,
    request: &'a Message,
    hidden: &'a Mutex<HashSet<String>>,
    forwards: &'a Forwards,
    zones: &'a Zones,
    cache_zones: &'a AtomicBool,
    depth: u8,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Message> + Send + 'a>> {
    Box::pin(async move {
        let upstream = request.queries.first().and_then(|q| {
            let name = norm(&q.name().to_ascii());
            forwards
                .lock()
                .unwrap()
                .iter()
                .find(|(zone, _)| name == *zone || name.ends_with(&format!(".{zone}")))
                .map(|(_, addr)| *addr)
        });
        let mut response = match upstream {
            Some(addr) => forward(addr, request).await,
            None => answer(route53, request, hidden, zones, cache_zones).await,
        };
        let qtype = request.queries.first().map(|q| q.query_type());
        let cname = response.answers.iter().find_map(|r| match &r.data {
            RData::CNAME(c) if qtype != Some(RecordType::CNAME) => Some(c.0.clone()),
            _ => None,
        });
        if let (Some(target), Some(qtype), true) = (cname, qtype, depth < 8) {
            let mut sub = Message::query();
            sub.add_query(hickory_proto::op::Query::query(target, qtype));
            let chased = respond(
                route53,
                &sub,
                hidden,
                forwards,
                zones,
                cache_zones,
                depth + 1,
            )
            .await;
            response.answers.extend(chased.answers);
            response.metadata.response_code = chased.metadata.response_code;
        }
        response
    })
}

async fn forward(server: SocketAddr, request: &Message) -> Message {
    let fail = || {
        let mut m = Message::response(request.metadata.id, OpCode::Query);
        m.metadata.response_code = ResponseCode::ServFail;
        m
    };
    let Ok(socket) = UdpSocket::bind("127.0.0.1:0").await else {
        return fail();
    };
    let Ok(bytes) = request.to_vec() else {
        return fail();
    };
    if socket.send_to(&bytes, server).await.is_err() {
        return fail();
    }
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(std::time::Duration::from_secs(2), socket.recv(&mut buf)).await {
        Ok(Ok(n)) => Message::from_vec(&buf[..n]).unwrap_or_else(|_| fail()),
        _ => fail(),
    }
}

fn soa_record(apex: &str) -> Record {
    let name = Name::from_ascii(format!("{apex}.")).expect("apex name");
    let mname = Name::from_ascii(format!("ns.{apex}.")).expect("mname");
    let rname = Name::from_ascii(format!("hostmaster.{apex}.")).expect("rname");
    Record::from_rdata(
        name,
        60,
        RData::SOA(SOA::new(mname, rname, 1, 60, 60, 600, 60)),
    )
}

/// `"a" "b"` -> ["a", "b"]; Route53 stores TXT values with their quotes.
fn txt_strings(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' if in_quotes => {
                out.push(std::mem::take(&mut current));
                in_quotes = false;
            }
            '"' => in_quotes = true,
            '\\' if in_quotes => {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            c if in_quotes => current.push(c),
            _ => {}
        }
    }
    if out.is_empty() {
        out.push(value.to_string());
    }
    out
}
