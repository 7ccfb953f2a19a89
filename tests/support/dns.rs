//! A DNS responder backed by moto's Route53: every query is answered from
//! the hosted zones as they are at that moment (TXT, NS, SOA, CNAME), read
//! from moto once per zone and kept current from the realistic Route53
//! front's journal of accepted changes (`Source`), so what Pebble and
//! certkeeper's propagation check see is exactly what went through the
//! Route53 API.

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{CNAME, NS, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
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
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Route53Dns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Route53Dns {
    /// Answers from moto's zones (`route53`, moto itself) and the changes
    /// `journal` (the Route53 front's) records.
    pub async fn start(route53: aws_sdk_route53::Client, journal: &std::path::Path) -> Route53Dns {
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
        let source = Arc::new(Source {
            route53,
            journal: journal.to_path_buf(),
            state: tokio::sync::Mutex::default(),
        });
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
                let (socket, source, hide, fwd) =
                    (socket.clone(), source.clone(), hide.clone(), fwd.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    let response = respond(&source, &request, &hide, &fwd, 0).await;
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
            task,
        }
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

async fn answer(source: &Source, request: &Message, hidden: &Mutex<HashSet<String>>) -> Message {
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
    let (apex, at_name) = match source.lookup(&qname).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            response.metadata.response_code = ResponseCode::Refused;
            return response;
        }
        Err(()) => {
            response.metadata.response_code = ResponseCode::ServFail;
            return response;
        }
    };
    let owner = query.name().clone();
    for (rtype, ttl, values) in &at_name {
        for value in values {
            let data = match (rtype.as_str(), qtype) {
                ("TXT", RecordType::TXT) => RData::TXT(TXT::new(txt_strings(value))),
                ("NS", RecordType::NS) => match Name::from_ascii(value) {
                    Ok(n) => RData::NS(NS(n)),
                    Err(_) => continue,
                },
                ("CNAME", _) => match Name::from_ascii(value) {
                    Ok(n) => RData::CNAME(CNAME(n)),
                    Err(_) => continue,
                },
                _ => continue,
            };
            response.add_answer(Record::from_rdata(owner.clone(), *ttl, data));
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

/// Record sets at one name: (type, TTL, values as Route53 holds them).
type Sets = Vec<(String, u32, Vec<String>)>;

/// One zone's record sets: (name, type) -> (TTL, values).
type ZoneSets = std::collections::HashMap<(String, String), (u32, Vec<String>)>;

/// Where the answers come from: moto's hosted zones, each read whole from
/// moto the first time a question falls in it, then kept current from the
/// Route53 front's journal of accepted changes (`route53_proxy.py`). So a
/// question costs no moto call (moto, one Python process, also serves the
/// runs' S3 traffic and would time the CA's lookups out), and what is
/// served is exactly what went through the Route53 API. Changes written to
/// moto directly, bypassing the front, are not seen once a zone is read:
/// tests write through the front.
struct Source {
    route53: aws_sdk_route53::Client,
    journal: std::path::PathBuf,
    state: tokio::sync::Mutex<Mirror>,
}

#[derive(Default)]
struct Mirror {
    /// (apex, zone id) as last listed, and when.
    zones: Vec<(String, String)>,
    listed: Option<std::time::Instant>,
    /// How far the journal has been read, and an unfinished last line.
    offset: u64,
    partial: Vec<u8>,
    /// Every journal entry so far, replayed over a zone when it is read.
    history: Vec<Entry>,
    /// Zone id -> (name, type) -> (TTL, values).
    read: std::collections::HashMap<String, ZoneSets>,
}

/// One line of the front's journal: a record set as a change left it.
#[derive(serde::Deserialize, Clone)]
struct Entry {
    zone: String,
    name: String,
    r#type: String,
    ttl: u32,
    values: Vec<String>,
}

/// How often the zone list is read again: zones created later (a subzone
/// under a known one) are seen within this.
const ZONES_FRESH: std::time::Duration = std::time::Duration::from_secs(2);

impl Source {
    /// The zone holding `qname` and the sets at that name; `None` when no
    /// zone holds it; `Err` when moto did not answer.
    async fn lookup(&self, qname: &str) -> Result<Option<(String, Sets)>, ()> {
        let mut mirror = self.state.lock().await;
        mirror.catch_up(&self.journal);
        let find = |zones: &[(String, String)]| {
            zones
                .iter()
                .filter(|(apex, _)| qname == apex || qname.ends_with(&format!(".{apex}")))
                .max_by_key(|(apex, _)| apex.len())
                .cloned()
        };
        let stale = mirror.listed.is_none_or(|at| at.elapsed() > ZONES_FRESH);
        let mut zone = find(&mirror.zones);
        if zone.is_none() || stale {
            let list = self
                .route53
                .list_hosted_zones()
                .send()
                .await
                .map_err(|_| ())?;
            mirror.zones = list
                .hosted_zones()
                .iter()
                .map(|z| (norm(z.name()), zone_id(z.id())))
                .collect();
            mirror.listed = Some(std::time::Instant::now());
            zone = find(&mirror.zones);
        }
        let Some((apex, id)) = zone else {
            return Ok(None);
        };
        if !mirror.read.contains_key(&id) {
            let sets = self.read_zone(&id).await?;
            mirror.read.insert(id.clone(), sets);
            let replay: Vec<Entry> = mirror
                .history
                .iter()
                .filter(|e| e.zone == id)
                .cloned()
                .collect();
            for entry in replay {
                mirror.apply(entry);
            }
        }
        let sets = mirror.read[&id]
            .iter()
            .filter(|((name, _), _)| name == qname)
            .map(|((_, rtype), (ttl, values))| (rtype.clone(), *ttl, values.clone()))
            .collect();
        Ok(Some((apex, sets)))
    }

    /// Every record set of a zone, as moto holds it now.
    async fn read_zone(&self, id: &str) -> Result<ZoneSets, ()> {
        let mut out = std::collections::HashMap::new();
        let mut next: Option<(String, aws_sdk_route53::types::RrType)> = None;
        loop {
            let mut ask = self.route53.list_resource_record_sets().hosted_zone_id(id);
            if let Some((name, rtype)) = next.take() {
                ask = ask.start_record_name(name).start_record_type(rtype);
            }
            let page = ask.send().await.map_err(|_| ())?;
            for set in page.resource_record_sets() {
                let values = set
                    .resource_records()
                    .iter()
                    .map(|r| r.value().to_string())
                    .collect();
                out.insert(
                    (norm(set.name()), set.r#type().as_str().to_string()),
                    (set.ttl().unwrap_or(60) as u32, values),
                );
            }
            match (
                page.is_truncated(),
                page.next_record_name(),
                page.next_record_type(),
            ) {
                (true, Some(name), Some(rtype)) => next = Some((name.to_string(), rtype.clone())),
                _ => return Ok(out),
            }
        }
    }
}

impl Mirror {
    /// Reads what the front journaled since the last look.
    fn catch_up(&mut self, journal: &std::path::Path) {
        use std::io::{Read, Seek};
        let Ok(mut file) = std::fs::File::open(journal) else {
            return;
        };
        if file.seek(std::io::SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut fresh = Vec::new();
        let Ok(n) = file.read_to_end(&mut fresh) else {
            return;
        };
        self.offset += n as u64;
        self.partial.extend_from_slice(&fresh);
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return;
        };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        for line in complete.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let entry: Entry =
                serde_json::from_slice(line).expect("a journal line of route53_proxy.py");
            self.history.push(entry.clone());
            self.apply(entry);
        }
    }

    fn apply(&mut self, entry: Entry) {
        let Some(zone) = self.read.get_mut(&entry.zone) else {
            return;
        };
        let key = (entry.name, entry.r#type);
        if entry.values.is_empty() {
            zone.remove(&key);
        } else {
            zone.insert(key, (entry.ttl, entry.values));
        }
    }
}

fn zone_id(id: &str) -> String {
    id.trim_start_matches("/hostedzone/").to_string()
}

type Forwards = Mutex<Vec<(String, SocketAddr)>>;

/// Answers from Route53's zones, or relays to a forward zone's server; a
/// CNAME found is chased like a resolver would, so the answer holds the chain.
fn respond<'a>(
    source: &'a Source,
    request: &'a Message,
    hidden: &'a Mutex<HashSet<String>>,
    forwards: &'a Forwards,
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
            None => answer(source, request, hidden).await,
        };
        let qtype = request.queries.first().map(|q| q.query_type());
        let cname = response.answers.iter().find_map(|r| match &r.data {
            RData::CNAME(c) if qtype != Some(RecordType::CNAME) => Some(c.0.clone()),
            _ => None,
        });
        if let (Some(target), Some(qtype), true) = (cname, qtype, depth < 8) {
            let mut sub = Message::query();
            sub.add_query(hickory_proto::op::Query::query(target, qtype));
            let chased = respond(source, &sub, hidden, forwards, depth + 1).await;
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
