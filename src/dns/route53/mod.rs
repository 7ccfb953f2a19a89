//! Route53: TXT values through ChangeResourceRecordSets, batched.
//!
//! Every present and cleanup request goes through one batcher task, which
//! waits a moment for the requests of other orders in flight and then writes
//! one ChangeBatch per zone for all of them, with one INSYNC wait per batch.
//! Route53 replaces a whole record set on every change, so the batcher keeps
//! the value set of every name it wrote and merges into it; a name it has not
//! seen is created optimistically (CREATE fails if the name already holds
//! someone else's values, and the batch is then redone after reading them).
//! Cleanup removes only our values. Because one task owns every change, a
//! wildcard and its apex, or two certificates sharing a name, never drop each
//! other's values. API calls share a token bucket and are retried on
//! throttling with backoff and jitter.

use super::{DnsError, DnsProvider, TxtRecord, ZoneHint};
use crate::config::domain::normalize_name;
use crate::ratelimit::TokenBucket;
use async_trait::async_trait;
use aws_sdk_route53::Client;
use aws_sdk_route53::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecord, ResourceRecordSet, RrType,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep};

mod insync;
mod rules;

use rules::{batch_window, chunks, cleanup_window, route53_name};

const PROVIDER: &str = "route53";
const TTL: i64 = 60;
const INSYNC_TIMEOUT: Duration = Duration::from_secs(600);
/// Attempts of one call; throttling and a zone still busy with a prior
/// change are answered more patiently than an error (`THROTTLE_ATTEMPTS`):
/// every throttled call is retried.
const MAX_ATTEMPTS: u32 = 6;
const THROTTLE_ATTEMPTS: u32 = 16;

/// Settings of one Route53 provider that are not credentials.
#[derive(Debug, Clone, Default)]
pub struct Route53Options {
    /// Use private hosted zones instead of public ones.
    pub private_zone: bool,
    /// API requests per second for this account (Route53 allows 5).
    pub requests_per_second: Option<f64>,
}

pub struct Route53 {
    inner: Arc<Inner>,
    requests: mpsc::UnboundedSender<Request>,
    batcher: tokio::task::JoinHandle<()>,
}

impl Drop for Route53 {
    fn drop(&mut self) {
        self.batcher.abort();
    }
}

struct Inner {
    client: Client,
    options: Route53Options,
    /// (zone apex, zone id) of every zone of the wanted kind, loaded once.
    zones: tokio::sync::Mutex<Option<Vec<(String, String)>>>,
    /// (zone id, name) -> the quoted values the set holds, as far as we know.
    known: Mutex<HashMap<(String, String), Vec<String>>>,
    /// Zones whose TXT sets were all read (a name missing from `known` is
    /// then known to be empty).
    snapshots: tokio::sync::Mutex<std::collections::HashSet<String>>,
    bucket: TokenBucket,
    calls: AtomicU64,
    /// How long the last change took to go INSYNC, in milliseconds: when
    /// to ask about the next one, and how long to gather a batch.
    insync_ms: AtomicU64,
    /// One change is asked about at a time, oldest first (tokio's mutex is
    /// fair): by the time the oldest is INSYNC the later ones mostly are
    /// too, so each of those costs one GetChange.
    polling: tokio::sync::Mutex<()>,
    /// Changes submitted and not yet seen INSYNC, with when.
    waiting: Mutex<HashMap<String, Instant>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Remove,
}

struct Request {
    zone_id: String,
    op: Op,
    /// name -> values
    records: Vec<(String, String)>,
    done: oneshot::Sender<Result<(), DnsError>>,
}

impl Route53 {
    pub fn new(client: Client) -> Self {
        Self::with_options(client, Route53Options::default())
    }

    pub fn with_options(client: Client, options: Route53Options) -> Self {
        let inner = Arc::new(Inner {
            client,
            bucket: {
                let rate = options.requests_per_second.unwrap_or(5.0);
                TokenBucket::new(rate, rate)
            },
            options,
            zones: tokio::sync::Mutex::new(None),
            known: Mutex::new(HashMap::new()),
            snapshots: Default::default(),
            calls: AtomicU64::new(0),
            insync_ms: AtomicU64::new(0),
            polling: tokio::sync::Mutex::new(()),
            waiting: Mutex::new(HashMap::new()),
        });
        let (requests, rx) = mpsc::unbounded_channel();
        let batcher = tokio::spawn(run_batcher(inner.clone(), rx));
        Self {
            inner,
            requests,
            batcher,
        }
    }

    /// Finds the hosted zone for `name`: the given id, or the zone whose
    /// name is the longest suffix of `name`.
    pub async fn zone_for(&self, hint: &ZoneHint, name: &str) -> Result<String, DnsError> {
        self.inner.zone_for(hint, name).await
    }

    async fn submit(&self, hint: &ZoneHint, op: Op, records: &[TxtRecord]) -> Result<(), DnsError> {
        let mut by_zone: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for r in records {
            let zone = self.inner.zone_for(hint, &r.name).await?;
            by_zone
                .entry(zone)
                .or_default()
                .push((normalize_name(&r.name), r.value.clone()));
        }
        let mut waits = Vec::new();
        for (zone_id, records) in by_zone {
            let (done, wait) = oneshot::channel();
            self.requests
                .send(Request {
                    zone_id,
                    op,
                    records,
                    done,
                })
                .map_err(|_| batcher_gone())?;
            waits.push(wait);
        }
        for wait in waits {
            wait.await.map_err(|_| batcher_gone())??;
        }
        Ok(())
    }
}

fn batcher_gone() -> DnsError {
    DnsError::Api {
        provider: PROVIDER,
        operation: "batch",
        name: String::new(),
        message: "the Route53 batcher stopped".into(),
        code: None,
    }
}

/// The batcher: gathers presents for a short window (their callers wait
/// for INSYNC next) and removals for a longer one (nobody waits on them
/// but the run's end), and sends removals along with the next presents'
/// change when there is one, so they often cost no call of their own.
async fn run_batcher(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Request>) {
    let mut adds = Gathered::default();
    let mut removes = Gathered::default();
    let mut seq = 0u64;
    loop {
        let insync = inner.insync();
        let due = [
            adds.due(batch_window(insync)),
            removes.due(cleanup_window(insync)),
        ];
        let next = due.iter().flatten().min().copied();
        tokio::select! {
            received = rx.recv() => match received {
                Some(r) => {
                    seq += 1;
                    if r.op == Op::Add { &mut adds } else { &mut removes }.push(seq, r);
                }
                None => {
                    flush(&inner, both(&mut adds, &mut removes)).await;
                    return;
                }
            },
            _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                let now = Instant::now();
                let batch = if due[0].is_some_and(|d| d <= now) {
                    both(&mut adds, &mut removes)
                } else {
                    removes.take().into_iter().map(|(_, r)| r).collect()
                };
                flush(&inner, batch).await;
            }
        }
    }
}

/// Every gathered request, in the order they came (a value removed and
/// then presented again must end up present).
fn both(adds: &mut Gathered, removes: &mut Gathered) -> Vec<Request> {
    let mut all = adds.take();
    all.extend(removes.take());
    all.sort_by_key(|(seq, _)| *seq);
    all.into_iter().map(|(_, r)| r).collect()
}

/// Requests waiting for their batch (with their arrival number), and when
/// the first and the last came.
#[derive(Default)]
struct Gathered {
    requests: Vec<(u64, Request)>,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Gathered {
    fn push(&mut self, seq: u64, r: Request) {
        let now = Instant::now();
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.requests.push((seq, r));
    }

    /// When to send: `idle` after the last request, at most `most` after
    /// the first; `None` when empty.
    fn due(&self, (idle, most): (Duration, Duration)) -> Option<Instant> {
        Some((self.last? + idle).min(self.first? + most))
    }

    fn take(&mut self) -> Vec<(u64, Request)> {
        self.first = None;
        self.last = None;
        std::mem::take(&mut self.requests)
    }
}

async fn flush(inner: &Arc<Inner>, batch: Vec<Request>) {
    let mut by_zone: BTreeMap<String, Vec<Request>> = BTreeMap::new();
    for r in batch {
        by_zone.entry(r.zone_id.clone()).or_default().push(r);
    }
    for (zone_id, requests) in by_zone {
        inner.clone().apply(zone_id, requests).await;
    }
}

impl Inner {
    async fn zone_for(&self, hint: &ZoneHint, name: &str) -> Result<String, DnsError> {
        if let Some(id) = &hint.zone_id {
            return Ok(id.trim_start_matches("/hostedzone/").to_string());
        }
        let name = normalize_name(name);
        let zones = self.load_zones().await?;
        zones
            .iter()
            .filter(|(apex, _)| name == *apex || name.ends_with(&format!(".{apex}")))
            .max_by_key(|(apex, _)| apex.len())
            .map(|(_, id)| id.clone())
            .ok_or(DnsError::NoZone {
                provider: PROVIDER,
                name,
            })
    }

    /// Every hosted zone of the wanted kind, once per provider (per run):
    /// one call per 100 zones instead of one per candidate suffix.
    async fn load_zones(&self) -> Result<Vec<(String, String)>, DnsError> {
        let mut cache = self.zones.lock().await;
        if let Some(zones) = &*cache {
            return Ok(zones.clone());
        }
        let mut out = Vec::new();
        let (mut next_name, mut next_id) = (None, None);
        loop {
            let page = self
                .call("ListHostedZonesByName", "(zones)", || {
                    self.client
                        .list_hosted_zones_by_name()
                        .set_dns_name(next_name.clone())
                        .set_hosted_zone_id(next_id.clone())
                        .max_items(100)
                        .send()
                })
                .await?;
            for zone in page.hosted_zones() {
                let private = zone.config().is_some_and(|c| c.private_zone());
                if private == self.options.private_zone {
                    out.push((
                        normalize_name(zone.name()),
                        zone.id().trim_start_matches("/hostedzone/").to_string(),
                    ));
                }
            }
            next_name = page.next_dns_name().map(str::to_string);
            next_id = page.next_hosted_zone_id().map(str::to_string);
            if !page.is_truncated() || next_name.is_none() {
                break;
            }
        }
        *cache = Some(out.clone());
        Ok(out)
    }

    /// One API call: rate-limited, counted, retried on throttling and 5xx.
    async fn call<T, E, F, Fut>(
        &self,
        operation: &'static str,
        name: &str,
        f: F,
    ) -> Result<T, DnsError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<
                Output = Result<
                    T,
                    aws_sdk_route53::error::SdkError<
                        E,
                        aws_sdk_route53::config::http::HttpResponse,
                    >,
                >,
            >,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let mut attempt = 0;
        loop {
            self.bucket.acquire().await;
            self.calls.fetch_add(1, Ordering::Relaxed);
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let code = e.code().unwrap_or_default().to_string();
                    let server = e
                        .raw_response()
                        .is_some_and(|r| r.status().is_server_error());
                    let transient = matches!(
                        code.as_str(),
                        "Throttling"
                            | "ThrottlingException"
                            | "PriorRequestNotComplete"
                            | "RequestLimitExceeded"
                    ) || server;
                    // A zone busy with a prior change answers the same way
                    // until it is done: as patient as with throttling.
                    let throttled = code.starts_with("Throttling")
                        || code == "RequestLimitExceeded"
                        || code == "PriorRequestNotComplete";
                    let attempts = if throttled {
                        THROTTLE_ATTEMPTS
                    } else {
                        MAX_ATTEMPTS
                    };
                    if transient && attempt + 1 < attempts {
                        let delay = Duration::from_millis(200 * 2u64.pow(attempt.min(6)))
                            .min(Duration::from_secs(10));
                        tracing::debug!(event = "dns.route53.retry", operation, code = %code, attempt);
                        sleep(delay.mul_f64(0.5 + rand::random::<f64>() * 0.5)).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(api_error(operation, name, &e));
                }
            }
        }
    }

    /// Applies every request of one batch for one zone with one change.
    async fn apply(self: Arc<Self>, zone_id: String, requests: Vec<Request>) {
        let mut result = self.change(&zone_id, &requests, false).await;
        if let Err(DnsError::Api {
            code: Some(code), ..
        }) = &result
            && code == "InvalidChangeBatch"
        {
            // Our picture of some set was wrong (someone else's values, or a
            // change made outside certkeeper): read them all and redo.
            result = self.change(&zone_id, &requests, true).await;
        }
        if result.is_err() && requests.len() > 1 {
            // One bad request must not fail everyone else's: redo them one
            // by one, so each gets its own verdict.
            for request in requests {
                let result = self
                    .change(&zone_id, std::slice::from_ref(&request), true)
                    .await;
                self.clone().finish(vec![request], result);
            }
            return;
        }
        self.finish(requests, result);
    }

    /// Answers the requests of a submitted change; adds only once INSYNC.
    fn finish(self: Arc<Self>, requests: Vec<Request>, result: Result<Vec<Submitted>, DnsError>) {
        let (present, rest): (Vec<Request>, Vec<Request>) =
            requests.into_iter().partition(|r| r.op == Op::Add);
        let submitted = match result {
            Err(e) => {
                for r in present.into_iter().chain(rest) {
                    let _ = r.done.send(Err(e.clone()));
                }
                return;
            }
            Ok(submitted) => submitted,
        };
        for r in rest {
            let _ = r.done.send(Ok(()));
        }
        if present.is_empty() {
            return;
        }
        // The INSYNC wait runs on its own so the next batch can form.
        tokio::spawn(async move {
            let mut waited = Ok(());
            for change in submitted.iter().filter(|c| !c.insync) {
                waited = self.wait_insync(&change.id).await;
                if waited.is_err() {
                    break;
                }
            }
            for r in present {
                let _ = r.done.send(waited.clone());
            }
        });
    }

    /// Computes the new value set of every name touched and submits one
    /// ChangeBatch. With `reread`, current values are read first.
    async fn change(
        &self,
        zone_id: &str,
        requests: &[Request],
        reread: bool,
    ) -> Result<Vec<Submitted>, DnsError> {
        let mut names: BTreeMap<&str, Vec<(Op, &str)>> = BTreeMap::new();
        for r in requests {
            for (name, value) in &r.records {
                names.entry(name).or_default().push((r.op, value));
            }
        }
        let snapshot = self.snapshot(zone_id).await?;
        let mut changes = Vec::new();
        let mut updates = Vec::new();
        for (name, ops) in names {
            let key = (zone_id.to_string(), name.to_string());
            let cached = self.known.lock().expect("known").get(&key).cloned();
            // A set we know nothing about is read, never guessed.
            let needs_read = reread || (cached.is_none() && !snapshot);
            let current = match (needs_read, cached) {
                (false, Some(c)) => c,
                (false, None) => Vec::new(),
                (true, _) => self.read_values(zone_id, name).await?,
            };
            let mut desired = current.clone();
            for (op, value) in ops {
                let q = format!("\"{value}\"");
                match op {
                    Op::Add if !desired.contains(&q) => desired.push(q),
                    Op::Remove => desired.retain(|v| *v != q),
                    _ => {}
                }
            }
            let action = match (current.is_empty(), desired.is_empty()) {
                (_, _) if current == desired => None,
                (true, false) if !needs_read => Some((ChangeAction::Create, desired.clone())),
                (_, false) => Some((ChangeAction::Upsert, desired.clone())),
                (false, true) => Some((ChangeAction::Delete, current.clone())),
                (true, true) => None,
            };
            if let Some((action, values)) = action {
                changes.push(change(action, record_set(name, &values)?));
            }
            updates.push((key, desired));
        }
        let mut submitted = Vec::new();
        for chunk in chunks(changes) {
            let what = format!("{} record sets in zone {zone_id}", chunk.len());
            let batch = ChangeBatch::builder()
                .comment("certkeeper dns-01")
                .set_changes(Some(chunk))
                .build()
                .map_err(|e| build_error(&what, e))?;
            let out = self
                .call("ChangeResourceRecordSets", &what, || {
                    self.client
                        .change_resource_record_sets()
                        .hosted_zone_id(zone_id)
                        .change_batch(batch.clone())
                        .send()
                })
                .await?;
            if let Some(info) = out.change_info() {
                submitted.push(Submitted {
                    id: info.id().to_string(),
                    insync: info.status() == &ChangeStatus::Insync,
                });
            }
        }
        let mut known = self.known.lock().expect("known");
        for (key, desired) in updates {
            known.insert(key, desired);
        }
        Ok(submitted)
    }

    /// Reads every TXT set of a small zone once (a page holds 300 record
    /// sets), so a run costs a couple of reads per zone instead of one per
    /// name. Large zones are read name by name. Returns whether the zone is
    /// covered by a snapshot.
    async fn snapshot(&self, zone_id: &str) -> Result<bool, DnsError> {
        const MAX_SNAPSHOT_SETS: i64 = 1500;
        let mut done = self.snapshots.lock().await;
        if done.contains(zone_id) {
            return Ok(true);
        }
        let zone = self
            .call("GetHostedZone", zone_id, || {
                self.client.get_hosted_zone().id(zone_id).send()
            })
            .await?;
        let count = zone
            .hosted_zone()
            .and_then(|z| z.resource_record_set_count())
            .unwrap_or(i64::MAX);
        if count > MAX_SNAPSHOT_SETS {
            return Ok(false);
        }
        let mut found: Vec<((String, String), Vec<String>)> = Vec::new();
        let (mut next_name, mut next_type, mut next_id) = (None, None, None);
        loop {
            let page = self
                .call("ListResourceRecordSets", zone_id, || {
                    self.client
                        .list_resource_record_sets()
                        .hosted_zone_id(zone_id)
                        .set_start_record_name(next_name.clone())
                        .set_start_record_type(next_type.clone())
                        .set_start_record_identifier(next_id.clone())
                        .max_items(300)
                        .send()
                })
                .await?;
            for set in page.resource_record_sets() {
                if set.r#type() == &RrType::Txt {
                    let values = set
                        .resource_records()
                        .iter()
                        .map(|r| r.value().to_string())
                        .collect();
                    found.push(((zone_id.to_string(), route53_name(set.name())), values));
                }
            }
            if !page.is_truncated() {
                break;
            }
            next_name = page.next_record_name().map(str::to_string);
            next_type = page.next_record_type().cloned();
            next_id = page.next_record_identifier().map(str::to_string);
            if next_name.is_none() {
                break;
            }
        }
        let mut known = self.known.lock().expect("known");
        for (key, values) in found {
            known.entry(key).or_insert(values);
        }
        done.insert(zone_id.to_string());
        Ok(true)
    }

    /// The TXT values (as Route53 stores them, quoted) currently at `name`.
    async fn read_values(&self, zone_id: &str, name: &str) -> Result<Vec<String>, DnsError> {
        let out = self
            .call("ListResourceRecordSets", name, || {
                self.client
                    .list_resource_record_sets()
                    .hosted_zone_id(zone_id)
                    .start_record_name(format!("{name}."))
                    .start_record_type(RrType::Txt)
                    .max_items(1)
                    .send()
            })
            .await?;
        Ok(out
            .resource_record_sets()
            .iter()
            .filter(|s| s.r#type() == &RrType::Txt && route53_name(s.name()) == name)
            .flat_map(|s| s.resource_records().iter().map(|r| r.value().to_string()))
            .collect())
    }
}

/// A ChangeResourceRecordSets request Route53 accepted.
struct Submitted {
    id: String,
    /// Already INSYNC in its answer (moto; never real Route53).
    insync: bool,
}

fn api_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    operation: &'static str,
    name: &str,
    err: &E,
) -> DnsError {
    let message = match (err.code(), err.message()) {
        (Some(code), Some(msg)) => format!("{code}: {msg}"),
        (Some(code), None) => code.to_string(),
        _ => DisplayErrorContext(err).to_string(),
    };
    DnsError::Api {
        provider: PROVIDER,
        operation,
        name: name.to_string(),
        message,
        code: err.code().map(str::to_string),
    }
}

fn build_error(name: &str, e: aws_sdk_route53::error::BuildError) -> DnsError {
    DnsError::Api {
        provider: PROVIDER,
        operation: "ChangeResourceRecordSets",
        name: name.to_string(),
        message: e.to_string(),
        code: None,
    }
}

fn record_set(name: &str, values: &[String]) -> Result<ResourceRecordSet, DnsError> {
    let mut set = ResourceRecordSet::builder()
        .name(format!("{name}."))
        .r#type(RrType::Txt)
        .ttl(TTL);
    for v in values {
        set = set.resource_records(
            ResourceRecord::builder()
                .value(v)
                .build()
                .map_err(|e| build_error(name, e))?,
        );
    }
    set.build().map_err(|e| build_error(name, e))
}

fn change(action: ChangeAction, set: ResourceRecordSet) -> Change {
    Change::builder()
        .action(action)
        .resource_record_set(set)
        .build()
        .expect("action and record set are set")
}

#[async_trait]
impl DnsProvider for Route53 {
    fn kind(&self) -> &'static str {
        PROVIDER
    }

    async fn present(&self, hint: &ZoneHint, records: &[TxtRecord]) -> Result<(), DnsError> {
        self.submit(hint, Op::Add, records).await
    }

    async fn cleanup(&self, hint: &ZoneHint, records: &[TxtRecord]) -> Result<(), DnsError> {
        self.submit(hint, Op::Remove, records).await
    }

    async fn authoritative_nameservers(
        &self,
        hint: &ZoneHint,
        name: &str,
    ) -> Result<Vec<String>, DnsError> {
        let zone_id = self.inner.zone_for(hint, name).await?;
        let out = self
            .inner
            .call("GetHostedZone", name, || {
                self.inner.client.get_hosted_zone().id(&zone_id).send()
            })
            .await?;
        let servers: Vec<String> = out
            .delegation_set()
            .map(|d| d.name_servers().to_vec())
            .unwrap_or_default();
        if servers.is_empty() {
            return Err(DnsError::Nameservers {
                name: name.to_string(),
                message: format!("hosted zone {zone_id} has no delegation set"),
            });
        }
        Ok(servers)
    }

    async fn zones(&self) -> Result<Vec<String>, DnsError> {
        Ok(self
            .inner
            .load_zones()
            .await?
            .into_iter()
            .map(|(apex, _)| apex)
            .collect())
    }

    fn api_calls(&self) -> u64 {
        self.inner.calls.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests;
