//! Route53: TXT values through ChangeResourceRecordSets.
//!
//! Route53 replaces a whole record set on UPSERT, so adding a value means
//! reading the set, merging, and writing it back. That read-modify-write is
//! serialized per record name within the process, so a wildcard and its apex
//! (same name) or two certificates sharing a name never drop each other's
//! values. Zone lookups are cached for the life of the provider (one run).

use super::{DnsError, DnsProvider, TxtRecord, ZoneHint, normalize_name};
use async_trait::async_trait;
use aws_sdk_route53::Client;
use aws_sdk_route53::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecord, ResourceRecordSet, RrType,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::{Instant, sleep};

const PROVIDER: &str = "route53";
const TTL: i64 = 60;
const INSYNC_TIMEOUT: Duration = Duration::from_secs(600);

pub struct Route53 {
    client: Client,
    /// (zone apex, zone id) of every public zone, loaded on first use.
    zones: tokio::sync::Mutex<Option<Vec<(String, String)>>>,
    name_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    calls: AtomicU64,
}

/// A zone and the records going into it.
struct ZoneRecords {
    zone_id: String,
    /// name -> values
    values: BTreeMap<String, BTreeSet<String>>,
}

impl Route53 {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            zones: tokio::sync::Mutex::new(None),
            name_locks: Mutex::new(HashMap::new()),
            calls: AtomicU64::new(0),
        }
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    fn api_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
        operation: &'static str,
        name: &str,
        err: E,
    ) -> DnsError {
        let message = match (err.code(), err.message()) {
            (Some(code), Some(msg)) => format!("{code}: {msg}"),
            (Some(code), None) => code.to_string(),
            _ => DisplayErrorContext(&err).to_string(),
        };
        DnsError::Api {
            provider: PROVIDER,
            operation,
            name: name.to_string(),
            message,
        }
    }

    /// Finds the hosted zone for `name`: the given id, or the public zone
    /// whose name is the longest suffix of `name`.
    pub async fn zone_for(&self, hint: &ZoneHint, name: &str) -> Result<String, DnsError> {
        if let Some(id) = &hint.zone_id {
            return Ok(id.trim_start_matches("/hostedzone/").to_string());
        }
        let name = normalize_name(name);
        let mut zones = self.zones.lock().await;
        if zones.is_none() {
            *zones = Some(self.list_public_zones(&name).await?);
        }
        let zones = zones.as_ref().expect("just loaded");
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

    /// Every public hosted zone of the account, once per run: one call per
    /// 100 zones instead of one per candidate suffix of every name.
    async fn list_public_zones(&self, for_name: &str) -> Result<Vec<(String, String)>, DnsError> {
        let mut out = Vec::new();
        let (mut next_name, mut next_id) = (None, None);
        loop {
            self.count();
            let page = self
                .client
                .list_hosted_zones_by_name()
                .set_dns_name(next_name.take())
                .set_hosted_zone_id(next_id.take())
                .max_items(100)
                .send()
                .await
                .map_err(|e| Self::api_error("ListHostedZonesByName", for_name, e))?;
            for zone in page.hosted_zones() {
                if !zone.config().is_some_and(|c| c.private_zone()) {
                    out.push((
                        normalize_name(zone.name()),
                        zone.id().trim_start_matches("/hostedzone/").to_string(),
                    ));
                }
            }
            if !page.is_truncated() {
                return Ok(out);
            }
            next_name = page.next_dns_name().map(str::to_string);
            next_id = page.next_hosted_zone_id().map(str::to_string);
            if next_name.is_none() {
                return Ok(out);
            }
        }
    }

    fn lock_for(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.name_locks
            .lock()
            .expect("name locks")
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    async fn group_by_zone(
        &self,
        hint: &ZoneHint,
        records: &[TxtRecord],
    ) -> Result<Vec<ZoneRecords>, DnsError> {
        let mut by_zone: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
        for r in records {
            let zone = self.zone_for(hint, &r.name).await?;
            by_zone
                .entry(zone)
                .or_default()
                .entry(normalize_name(&r.name))
                .or_default()
                .insert(r.value.clone());
        }
        Ok(by_zone
            .into_iter()
            .map(|(zone_id, values)| ZoneRecords { zone_id, values })
            .collect())
    }

    /// The TXT values (as Route53 stores them, quoted) currently at `name`.
    async fn current_values(&self, zone_id: &str, name: &str) -> Result<Vec<String>, DnsError> {
        self.count();
        let out = self
            .client
            .list_resource_record_sets()
            .hosted_zone_id(zone_id)
            .start_record_name(format!("{name}."))
            .start_record_type(RrType::Txt)
            .max_items(1)
            .send()
            .await
            .map_err(|e| Self::api_error("ListResourceRecordSets", name, e))?;
        Ok(out
            .resource_record_sets()
            .iter()
            .filter(|s| s.r#type() == &RrType::Txt && normalize_name(s.name()) == name)
            .flat_map(|s| s.resource_records().iter().map(|r| r.value().to_string()))
            .collect())
    }

    fn record_set(name: &str, values: &[String]) -> Result<ResourceRecordSet, DnsError> {
        let build_err = |e: aws_sdk_route53::error::BuildError| DnsError::Api {
            provider: PROVIDER,
            operation: "ChangeResourceRecordSets",
            name: name.to_string(),
            message: e.to_string(),
        };
        let mut set = ResourceRecordSet::builder()
            .name(format!("{name}."))
            .r#type(RrType::Txt)
            .ttl(TTL);
        for v in values {
            set = set.resource_records(
                ResourceRecord::builder()
                    .value(v)
                    .build()
                    .map_err(build_err)?,
            );
        }
        set.build().map_err(build_err)
    }

    async fn submit(
        &self,
        zone_id: &str,
        changes: Vec<Change>,
        what: &str,
    ) -> Result<Option<String>, DnsError> {
        if changes.is_empty() {
            return Ok(None);
        }
        let batch = ChangeBatch::builder()
            .comment("certkeeper dns-01")
            .set_changes(Some(changes))
            .build()
            .map_err(|e| DnsError::Api {
                provider: PROVIDER,
                operation: "ChangeResourceRecordSets",
                name: what.to_string(),
                message: e.to_string(),
            })?;
        self.count();
        let out = self
            .client
            .change_resource_record_sets()
            .hosted_zone_id(zone_id)
            .change_batch(batch)
            .send()
            .await
            .map_err(|e| Self::api_error("ChangeResourceRecordSets", what, e))?;
        Ok(out.change_info().map(|c| c.id().to_string()))
    }

    async fn wait_insync(&self, change_id: &str, what: &str) -> Result<(), DnsError> {
        let deadline = Instant::now() + INSYNC_TIMEOUT;
        let mut delay = Duration::from_millis(500);
        loop {
            self.count();
            let out = self
                .client
                .get_change()
                .id(change_id)
                .send()
                .await
                .map_err(|e| Self::api_error("GetChange", what, e))?;
            if out.change_info().map(|c| c.status()) == Some(&ChangeStatus::Insync) {
                return Ok(());
            }
            if Instant::now() + delay > deadline {
                return Err(DnsError::Api {
                    provider: PROVIDER,
                    operation: "GetChange",
                    name: what.to_string(),
                    message: format!(
                        "change {change_id} not INSYNC after {}s",
                        INSYNC_TIMEOUT.as_secs()
                    ),
                });
            }
            sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }
}

fn quoted(value: &str) -> String {
    format!("\"{value}\"")
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
        for zone in self.group_by_zone(hint, records).await? {
            let names: Vec<String> = zone.values.keys().cloned().collect();
            let what = names.join(",");
            // Hold every name's lock from read to write so no one else's
            // merge can interleave with ours.
            let locks: Vec<_> = names.iter().map(|n| self.lock_for(n)).collect();
            let mut guards = Vec::new();
            for l in &locks {
                guards.push(l.lock().await);
            }
            let mut changes = Vec::new();
            for (name, ours) in &zone.values {
                let mut values = self.current_values(&zone.zone_id, name).await?;
                for v in ours {
                    let q = quoted(v);
                    if !values.contains(&q) {
                        values.push(q);
                    }
                }
                changes.push(change(
                    ChangeAction::Upsert,
                    Self::record_set(name, &values)?,
                ));
            }
            let change_id = self.submit(&zone.zone_id, changes, &what).await?;
            drop(guards);
            if let Some(id) = change_id {
                self.wait_insync(&id, &what).await?;
            }
        }
        Ok(())
    }

    async fn cleanup(&self, hint: &ZoneHint, records: &[TxtRecord]) -> Result<(), DnsError> {
        for zone in self.group_by_zone(hint, records).await? {
            let names: Vec<String> = zone.values.keys().cloned().collect();
            let what = names.join(",");
            let locks: Vec<_> = names.iter().map(|n| self.lock_for(n)).collect();
            let mut guards = Vec::new();
            for l in &locks {
                guards.push(l.lock().await);
            }
            let mut changes = Vec::new();
            for (name, ours) in &zone.values {
                let current = self.current_values(&zone.zone_id, name).await?;
                if current.is_empty() {
                    continue;
                }
                let remaining: Vec<String> = current
                    .iter()
                    .filter(|v| !ours.iter().any(|o| &quoted(o) == *v))
                    .cloned()
                    .collect();
                if remaining.len() == current.len() {
                    continue;
                }
                let action = if remaining.is_empty() {
                    // DELETE must name the exact set that is there.
                    change(ChangeAction::Delete, Self::record_set(name, &current)?)
                } else {
                    change(ChangeAction::Upsert, Self::record_set(name, &remaining)?)
                };
                changes.push(action);
            }
            self.submit(&zone.zone_id, changes, &what).await?;
        }
        Ok(())
    }

    async fn authoritative_nameservers(
        &self,
        hint: &ZoneHint,
        name: &str,
    ) -> Result<Vec<String>, DnsError> {
        let zone_id = self.zone_for(hint, name).await?;
        self.count();
        let out = self
            .client
            .get_hosted_zone()
            .id(&zone_id)
            .send()
            .await
            .map_err(|e| Self::api_error("GetHostedZone", name, e))?;
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
        let mut zones = self.zones.lock().await;
        if zones.is_none() {
            *zones = Some(self.list_public_zones("(all zones)").await?);
        }
        Ok(zones
            .iter()
            .flatten()
            .map(|(apex, _)| apex.clone())
            .collect())
    }

    fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}
