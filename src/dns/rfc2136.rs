//! RFC 2136 dynamic updates, signed with TSIG, for on-prem DNS (BIND, …).
//!
//! Values are added and deleted one by one (class NONE deletes exactly one
//! value), never as a whole RRset, so a wildcard and its apex — or another
//! client — can hold values at the same name at the same time. Updates go
//! over TCP to the primary; the server's TSIG-signed answer is verified.

use super::{DnsError, DnsProvider, TxtRecord, ZoneHint};
use crate::config::domain::normalize_name;
use crate::settings::{Rfc2136Settings, TsigAlgorithm};
use async_trait::async_trait;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm as WireAlgorithm, TsigError};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigner};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const PROVIDER: &str = "rfc2136";
const TTL: u32 = 60;
const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Rfc2136 {
    server: SocketAddr,
    zone: String,
    zone_name: Name,
    key_name: String,
    signer: TSigner,
    calls: AtomicU64,
}

impl Rfc2136 {
    pub fn new(settings: &Rfc2136Settings) -> Result<Self, DnsError> {
        use base64::Engine;
        let config = |message: String| DnsError::Api {
            provider: PROVIDER,
            operation: "configure",
            name: settings.zone.clone(),
            message,
            code: None,
        };
        let server = settings.nameserver.parse().map_err(|_| {
            config(format!(
                "{:?} is not an ip:port address",
                settings.nameserver
            ))
        })?;
        let text = std::fs::read_to_string(&settings.tsig_secret_file).map_err(|e| {
            config(format!(
                "cannot read TSIG secret file {}: {e}",
                settings.tsig_secret_file.display()
            ))
        })?;
        let secret = base64::engine::general_purpose::STANDARD
            .decode(extract_secret(&text))
            .map_err(|_| {
                config(format!(
                    "{} holds no base64 TSIG secret",
                    settings.tsig_secret_file.display()
                ))
            })?;
        let algorithm = match settings.tsig_algorithm {
            TsigAlgorithm::HmacSha256 => WireAlgorithm::HmacSha256,
            TsigAlgorithm::HmacSha512 => WireAlgorithm::HmacSha512,
        };
        let key = Name::from_ascii(&settings.tsig_key_name)
            .map_err(|e| config(format!("TSIG key name: {e}")))?;
        let signer =
            TSigner::new(secret, algorithm, key, 300).map_err(|e| config(e.to_string()))?;
        let zone = normalize_name(&settings.zone);
        let zone_name =
            Name::from_ascii(format!("{zone}.")).map_err(|e| config(format!("zone: {e}")))?;
        Ok(Self {
            server,
            zone,
            zone_name,
            key_name: settings.tsig_key_name.clone(),
            signer,
            calls: AtomicU64::new(0),
        })
    }

    /// One update, retried a few times on SERVFAIL and network errors (a
    /// server that is reloading or starting answers SERVFAIL for a moment).
    async fn update(&self, records: &[TxtRecord], add: bool) -> Result<(), DnsError> {
        let mut attempt = 0;
        loop {
            match self.update_once(records, add).await {
                Err(Failed {
                    transient: true, ..
                }) if attempt < 4 => {
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                    attempt += 1;
                }
                other => return other.map_err(|f| f.error),
            }
        }
    }

    async fn update_once(&self, records: &[TxtRecord], add: bool) -> Result<(), Failed> {
        let operation = if add { "UPDATE add" } else { "UPDATE delete" };
        let what = records
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let api = |message: String| DnsError::Api {
            provider: PROVIDER,
            operation,
            name: what.clone(),
            message,
            code: None,
        };
        let err = |message: String| Failed {
            error: api(message),
            transient: false,
        };
        let transient = |message: String| Failed {
            error: api(message),
            transient: true,
        };
        let mut msg = Message::new(rand::random(), MessageType::Query, OpCode::Update);
        msg.add_query(Query::query(self.zone_name.clone(), RecordType::SOA));
        for r in records {
            let name = normalize_name(&r.name);
            if name != self.zone && !name.ends_with(&format!(".{}", self.zone)) {
                return Err(err(format!("{name} is not in zone {}", self.zone)));
            }
            let owner = Name::from_ascii(format!("{name}.")).map_err(|e| err(e.to_string()))?;
            let txt = RData::TXT(TXT::new(vec![r.value.clone()]));
            let mut record = Record::from_rdata(owner, if add { TTL } else { 0 }, txt);
            if !add {
                // Class NONE: delete exactly this value (RFC 2136 2.5.4).
                record.dns_class = DNSClass::NONE;
            }
            msg.authorities.push(record);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let (tsig, verifier) = self
            .signer
            .sign_message(&msg, now)
            .map_err(|e| err(e.to_string()))?;
        msg.signature = Some(tsig);
        let bytes = msg.to_vec().map_err(|e| err(e.to_string()))?;
        self.calls.fetch_add(1, Ordering::Relaxed);
        let answer = tokio::time::timeout(
            TIMEOUT,
            super::propagation::exchange_tcp(self.server, &bytes),
        )
        .await
        .map_err(|_| {
            transient(format!(
                "{} did not answer within {}s",
                self.server,
                TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| err(format!("{}: {e}", self.server)))?;
        let response = Message::from_vec(&answer).map_err(|e| err(format!("bad answer: {e}")))?;
        let tsig_error = response.signature.as_ref().and_then(|s| s.data.error);
        if let Some(e) = tsig_error {
            let why = match e {
                TsigError::BadSig => "BADSIG (wrong secret)".to_string(),
                TsigError::BadKey => {
                    format!("BADKEY (the server does not know key {:?})", self.key_name)
                }
                TsigError::BadTime => "BADTIME (clocks differ by more than 300s)".to_string(),
                other => format!("{other:?}"),
            };
            return Err(err(format!("TSIG verification failed: {why}")));
        }
        match response.metadata.response_code {
            ResponseCode::NoError => {}
            ResponseCode::Refused => {
                return Err(err(format!(
                    "REFUSED by {} (is key {:?} allowed to update zone {}?)",
                    self.server, self.key_name, self.zone
                )));
            }
            ResponseCode::NotAuth => {
                return Err(err(format!(
                    "NOTAUTH: {} is not authoritative for {}",
                    self.server, self.zone
                )));
            }
            ResponseCode::NotZone => {
                return Err(err(format!(
                    "NOTZONE: a name is outside zone {}",
                    self.zone
                )));
            }
            ResponseCode::ServFail => return Err(transient(ResponseCode::ServFail.to_string())),
            other => return Err(err(format!("{other}"))),
        }
        if let Some(mut verifier) = verifier {
            verifier
                .verify(&answer)
                .map_err(|e| err(format!("the server's answer failed TSIG verification: {e}")))?;
        }
        Ok(())
    }
}

/// An update that failed, and whether asking again may help: a server
/// that is starting or reloading answers SERVFAIL, or nothing, for a
/// moment.
struct Failed {
    error: DnsError,
    transient: bool,
}

/// Accepts a bare base64 secret or a BIND key file (`secret "…";`).
fn extract_secret(text: &str) -> String {
    if let Some(idx) = text.find("secret") {
        let rest = &text[idx + "secret".len()..];
        if let Some(start) = rest.find('"') {
            let rest = &rest[start + 1..];
            if let Some(end) = rest.find('"') {
                return rest[..end].trim().to_string();
            }
        }
    }
    text.trim().to_string()
}

#[async_trait]
impl DnsProvider for Rfc2136 {
    fn kind(&self) -> &'static str {
        PROVIDER
    }

    async fn present(&self, _zone: &ZoneHint, records: &[TxtRecord]) -> Result<(), DnsError> {
        self.update(records, true).await
    }

    async fn cleanup(&self, _zone: &ZoneHint, records: &[TxtRecord]) -> Result<(), DnsError> {
        self.update(records, false).await
    }

    async fn authoritative_nameservers(
        &self,
        _zone: &ZoneHint,
        _name: &str,
    ) -> Result<Vec<String>, DnsError> {
        Ok(vec![self.server.to_string()])
    }

    async fn zones(&self) -> Result<Vec<String>, DnsError> {
        Ok(vec![self.zone.clone()])
    }

    fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn secret_from_bind_key_file_or_bare() {
        let bind = "key \"certkeeper\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0\";\n};\n";
        assert_eq!(super::extract_secret(bind), "c2VjcmV0");
        assert_eq!(super::extract_secret("c2VjcmV0\n"), "c2VjcmV0");
    }
}
