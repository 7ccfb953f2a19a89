//! A hostile CA for fuzzing the ACME and ARI response handling: a
//! believable ACME server behind instant-acme's HTTP seam whose every answer
//! may be bent by the fuzz input — a wrong status, a problem document, a
//! mutated or truncated body, missing headers, a dropped connection, an
//! absurd Retry-After. The whole order runs through the real code
//! (`Issuer::issue` with its retries, the polite HTTP client, DNS-01 through
//! `Dns01`), with time paused so back-offs and polling cost nothing.
//!
//! What must hold whatever the CA says: no panic, the order ends, every TXT
//! record written is removed again, an issued chain is a PEM chain, and no
//! error text carries key material. `cargo fuzz run acme_responses` drives
//! it with libFuzzer (outside CI); a seeded, bounded run is a unit test.
//!
//! The DNS provider here is an in-memory record of what was written: the
//! property is about what the ACME code asks of DNS, not about a DNS server
//! (the providers have their own tests against Route53 on moto and BIND).

use crate::acme::Issuer;
use crate::acme::http::{Manners, PoliteClient};
use crate::dns::{DnsError, DnsProvider, TxtRecord, ZoneHint};
use bytes::Bytes;
use instant_acme::{Account, BodyWrapper, BytesResponse, HttpClient, NewAccount};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BASE: &str = "https://ca.invalid";
/// After this many requests every answer is a dropped connection, so a
/// client that never gives up would show as a test that never ends.
const MAX_REQUESTS: usize = 3_000;

/// The fuzz input, read a byte at a time; zeros once it runs out (a
/// well-behaved CA from then on).
struct Script {
    data: Vec<u8>,
    pos: usize,
}

impl Script {
    fn byte(&mut self) -> Option<u8> {
        let b = self.data.get(self.pos).copied();
        self.pos += 1;
        b
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).filter_map(|_| self.byte()).collect()
    }

    fn text(&mut self) -> String {
        let n = self.byte().unwrap_or(0) as usize % 48;
        String::from_utf8_lossy(&self.bytes(n)).into_owned()
    }
}

#[derive(Default)]
struct CaState {
    nonce: u64,
    authorizations: usize,
    ready: bool,
    finalized: bool,
    requests: usize,
}

struct HostileCa {
    script: Mutex<Script>,
    state: Mutex<CaState>,
    chain: String,
}

/// What the CA answers before the fuzz input bends it.
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn json_answer(status: u16, body: Value) -> Answer {
    Answer {
        status,
        headers: vec![("content-type", "application/json".into())],
        body: serde_json::to_vec(&body).expect("json"),
    }
}

const STATUSES: [&str; 10] = [
    "pending",
    "ready",
    "processing",
    "valid",
    "invalid",
    "deactivated",
    "expired",
    "revoked",
    "",
    "bogus",
];

const PROBLEMS: [&str; 8] = [
    "urn:ietf:params:acme:error:badNonce",
    "urn:ietf:params:acme:error:dns",
    "urn:ietf:params:acme:error:unauthorized",
    "urn:ietf:params:acme:error:rateLimited",
    "urn:ietf:params:acme:error:serverInternal",
    "urn:ietf:params:acme:error:accountDoesNotExist",
    "urn:ietf:params:acme:error:malformed",
    "about:blank",
];

impl HostileCa {
    fn order_body(&self, st: &CaState) -> Value {
        let status = match (st.finalized, st.ready) {
            (true, _) => "valid",
            (false, true) => "ready",
            _ => "pending",
        };
        let mut order = json!({
            "status": status,
            "identifiers": [{"type": "dns", "value": "a.example.test"}, {"type": "dns", "value": "example.test"}],
            "authorizations": (0..st.authorizations).map(|i| format!("{BASE}/authz/{i}")).collect::<Vec<_>>(),
            "finalize": format!("{BASE}/finalize/1"),
        });
        if st.finalized {
            order["certificate"] = json!(format!("{BASE}/cert/1"));
        }
        order
    }

    /// What a well-behaved CA answers.
    fn answer(&self, method: &str, path: &str) -> Answer {
        let mut st = self.state.lock().expect("state");
        let created = |location: String, body: Value| {
            let mut a = json_answer(201, body);
            a.headers.push(("location", location));
            a
        };
        match (method, path) {
            ("GET", "/dir") => json_answer(
                200,
                json!({
                    "newNonce": format!("{BASE}/nonce"),
                    "newAccount": format!("{BASE}/acct"),
                    "newOrder": format!("{BASE}/order"),
                    "revokeCert": format!("{BASE}/revoke"),
                    "keyChange": format!("{BASE}/key-change"),
                    "renewalInfo": format!("{BASE}/ari"),
                    "meta": {"profiles": {"classic": "the usual"}},
                }),
            ),
            ("HEAD", "/nonce") => Answer {
                status: 200,
                headers: Vec::new(),
                body: Vec::new(),
            },
            ("POST", "/acct") => created(
                format!("{BASE}/acct/1"),
                json!({"status": "valid", "contact": []}),
            ),
            ("POST", "/order") => {
                st.authorizations = 2;
                st.ready = false;
                st.finalized = false;
                created(format!("{BASE}/order/1"), self.order_body(&st))
            }
            ("POST", "/order/1") => json_answer(200, self.order_body(&st)),
            ("POST", "/finalize/1") => {
                st.finalized = true;
                json_answer(200, self.order_body(&st))
            }
            ("POST", "/cert/1") => Answer {
                status: 200,
                headers: vec![("content-type", "application/pem-certificate-chain".into())],
                body: self.chain.clone().into_bytes(),
            },
            ("POST", p) if p.starts_with("/authz/") => {
                let i = &p["/authz/".len()..];
                let value = if i == "0" {
                    "a.example.test"
                } else {
                    "example.test"
                };
                let status = if st.ready { "valid" } else { "pending" };
                json_answer(
                    200,
                    json!({
                        "status": status,
                        "identifier": {"type": "dns", "value": value},
                        "wildcard": i == "1",
                        "challenges": [
                            {"type": "http-01", "url": format!("{BASE}/chall/h{i}"), "token": format!("tok-h{i}"), "status": "pending"},
                            {"type": "dns-01", "url": format!("{BASE}/chall/{i}"), "token": format!("tok-{i}"), "status": status},
                        ],
                    }),
                )
            }
            ("POST", p) if p.starts_with("/chall/") => {
                st.ready = true;
                let i = &p["/chall/".len()..];
                json_answer(
                    200,
                    json!({"type": "dns-01", "url": format!("{BASE}{p}"), "token": format!("tok-{i}"), "status": "processing"}),
                )
            }
            ("GET", p) if p.starts_with("/ari/") => {
                let mut a = json_answer(
                    200,
                    json!({"suggestedWindow": {"start": "2027-01-01T00:00:00Z", "end": "2027-01-03T00:00:00Z"}}),
                );
                a.headers.push(("retry-after", "21600".into()));
                a
            }
            _ => json_answer(
                404,
                json!({"type": "urn:ietf:params:acme:error:malformed", "detail": "no such resource"}),
            ),
        }
    }

    /// Bends a JSON value at a random place.
    fn mutate(script: &mut Script, value: &mut Value, depth: usize) {
        let pick = script.byte().unwrap_or(0);
        match value {
            Value::Object(map) if !map.is_empty() && depth < 4 => {
                let keys: Vec<String> = map.keys().cloned().collect();
                let key = keys[pick as usize % keys.len()].clone();
                match script.byte().unwrap_or(0) % 4 {
                    0 => {
                        map.remove(&key);
                    }
                    1 if key == "status" => {
                        map[&key] = json!(STATUSES[pick as usize % STATUSES.len()]);
                    }
                    _ => Self::mutate(script, map.get_mut(&key).expect("key"), depth + 1),
                }
            }
            Value::Array(items) if !items.is_empty() && depth < 4 => {
                match script.byte().unwrap_or(0) % 3 {
                    0 => {
                        items.remove(pick as usize % items.len());
                    }
                    1 => {
                        let copy = items[0].clone();
                        items.push(copy);
                    }
                    _ => {
                        let i = pick as usize % items.len();
                        Self::mutate(script, &mut items[i], depth + 1);
                    }
                }
            }
            _ => {
                *value = match pick % 7 {
                    0 => Value::Null,
                    1 => json!(-1),
                    2 => json!(u64::MAX),
                    3 => json!(script.text()),
                    4 => json!([]),
                    5 => json!({}),
                    _ => json!(format!("{BASE}/{}", script.text())),
                };
            }
        }
    }

    /// The well-behaved answer, then bent as the script says.
    fn respond(&self, method: &str, path: &str) -> Result<Answer, instant_acme::Error> {
        let requests = {
            let mut st = self.state.lock().expect("state");
            st.requests += 1;
            st.requests
        };
        if requests > MAX_REQUESTS {
            return Err(dropped());
        }
        let mut answer = self.answer(method, path);
        let mut script = self.script.lock().expect("script");
        match script.byte() {
            None | Some(0..=149) => {}
            Some(150..=169) => {
                let kind = PROBLEMS[script.byte().unwrap_or(0) as usize % PROBLEMS.len()];
                let status = [400, 403, 404, 429, 500, 503, 200, 201]
                    [script.byte().unwrap_or(0) as usize % 8];
                let detail = script.text();
                answer = json_answer(
                    status,
                    json!({"type": kind, "detail": detail, "status": status, "subproblems": [{"type": kind, "detail": detail, "identifier": {"type": "dns", "value": "a.example.test"}}]}),
                );
                answer.headers[0].1 = "application/problem+json".into();
            }
            Some(170..=184) => {
                let n = script.byte().unwrap_or(0) as usize;
                answer.body = script.bytes(n);
            }
            Some(185..=219) => {
                if let Ok(mut value) = serde_json::from_slice::<Value>(&answer.body) {
                    // A problem inside the object, as orders and challenges carry.
                    if script.byte().unwrap_or(0).is_multiple_of(4) {
                        value["error"] = json!({
                            "type": PROBLEMS[script.byte().unwrap_or(0) as usize % PROBLEMS.len()],
                            "detail": script.text(),
                        });
                    }
                    Self::mutate(&mut script, &mut value, 0);
                    answer.body = serde_json::to_vec(&value).expect("json");
                }
            }
            Some(220..=234) => return Err(dropped()),
            Some(235..=244) => {
                let drop = script.byte().unwrap_or(0);
                answer.headers.retain(|(name, _)| match drop % 3 {
                    0 => *name != "location",
                    1 => *name != "content-type",
                    _ => *name != "retry-after",
                });
                if drop.is_multiple_of(2) {
                    // No nonce in this answer.
                    answer.headers.push(("x-no-nonce", String::new()));
                }
            }
            Some(_) => {
                let retry_after = match script.byte().unwrap_or(0) % 5 {
                    0 => "0".to_string(),
                    1 => "18446744073709551615".to_string(),
                    2 => "Fri, 31 Dec 1999 23:59:59 GMT".to_string(),
                    3 => script.text(),
                    _ => "3".to_string(),
                };
                answer.headers.retain(|(name, _)| *name != "retry-after");
                answer.headers.push(("retry-after", retry_after));
                if script.byte().unwrap_or(0).is_multiple_of(2) {
                    answer.status = if answer.status == 200 { 429 } else { 503 };
                }
                let keep = script.byte().unwrap_or(255) as usize;
                answer.body.truncate(keep.max(answer.body.len() / 2));
            }
        }
        Ok(answer)
    }
}

fn dropped() -> instant_acme::Error {
    instant_acme::Error::Other(Box::new(std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "connection reset by the hostile CA",
    )))
}

impl HttpClient for HostileCa {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let method = req.method().as_str().to_string();
        let path = req.uri().path().to_string();
        let result = self.respond(&method, &path).map(|answer| {
            let no_nonce = answer.headers.iter().any(|(n, _)| *n == "x-no-nonce");
            let mut builder = http::Response::builder().status(answer.status);
            if !no_nonce {
                let mut st = self.state.lock().expect("state");
                st.nonce += 1;
                builder = builder.header("replay-nonce", format!("nonce-{}", st.nonce));
            }
            for (name, value) in &answer.headers {
                if *name != "x-no-nonce"
                    && let Ok(v) = http::HeaderValue::from_str(value)
                {
                    builder = builder.header(*name, v);
                }
            }
            let (parts, ()) = builder.body(()).expect("response").into_parts();
            BytesResponse {
                parts,
                body: Box::new(Bytes::from(answer.body)),
            }
        });
        Box::pin(async move { result })
    }
}

/// Remembers what is in "DNS": what was written and not yet removed.
#[derive(Default)]
struct Recorder {
    live: Mutex<BTreeSet<TxtRecord>>,
    written: Mutex<usize>,
}

#[async_trait::async_trait]
impl DnsProvider for Recorder {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn present(&self, _zone: &ZoneHint, records: &[TxtRecord]) -> Result<(), DnsError> {
        *self.written.lock().expect("written") += records.len();
        self.live
            .lock()
            .expect("live")
            .extend(records.iter().cloned());
        Ok(())
    }

    async fn cleanup(&self, _zone: &ZoneHint, records: &[TxtRecord]) -> Result<(), DnsError> {
        let mut live = self.live.lock().expect("live");
        for r in records {
            live.remove(r);
        }
        Ok(())
    }

    async fn authoritative_nameservers(
        &self,
        _zone: &ZoneHint,
        _name: &str,
    ) -> Result<Vec<String>, DnsError> {
        Ok(Vec::new())
    }

    async fn zones(&self) -> Result<Vec<String>, DnsError> {
        Ok(vec!["example.test".into()])
    }
}

/// What one hostile conversation came to.
#[derive(Debug)]
pub struct Outcome {
    /// `Ok(())` when a certificate came out.
    pub issued: Result<(), crate::acme::AcmeError>,
    /// TXT records written during the order.
    pub txt_written: usize,
    /// TXT records written and never removed: must be 0.
    pub txt_left: usize,
    pub requests: usize,
    /// The Retry-After of the ARI answer, when there was one.
    pub ari_retry: Option<Duration>,
}

/// Runs one account creation, one DNS-01 order and one ARI lookup against
/// a CA that answers as `data` says, and checks what must hold whatever
/// it says (panicking when it does not, as fuzzers expect).
pub fn hostile_ca(data: &[u8]) -> Outcome {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    runtime.block_on(conversation(data))
}

fn leaf() -> (String, String) {
    static LEAF: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    LEAF.get_or_init(|| {
        // Signed by a CA, with an Authority Key Identifier: ARI identifies
        // a certificate by it, and a leaf without one never reaches ARI.
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["a.example.test".into()]).expect("params");
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &ca).expect("cert");
        (cert.pem(), key.serialize_pem())
    })
    .clone()
}

/// A CA answering as `data` says, issuing the leaf of `leaf()`.
fn ca_from(data: &[u8]) -> Arc<HostileCa> {
    let (leaf_pem, _) = leaf();
    Arc::new(HostileCa {
        script: Mutex::new(Script {
            data: data.to_vec(),
            pos: 0,
        }),
        state: Mutex::new(CaState::default()),
        chain: format!("{leaf_pem}{leaf_pem}"),
    })
}

async fn new_account(
    client: Box<dyn HttpClient>,
) -> Result<(Account, instant_acme::AccountCredentials), instant_acme::Error> {
    Account::builder_with_http(client)
        .create(
            &NewAccount {
                contact: &[],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            format!("{BASE}/dir"),
            None,
        )
        .await
}

/// DNS-01 through an in-memory `Recorder` as `provider`, no propagation
/// check.
fn memory_dns(provider: &str) -> (Arc<Recorder>, crate::dns::Dns01) {
    let recorder = Arc::new(Recorder::default());
    let mut providers: std::collections::BTreeMap<String, Arc<dyn DnsProvider>> =
        Default::default();
    providers.insert(provider.to_string(), recorder.clone());
    let settings = crate::settings::DnsSettings {
        propagation: crate::settings::Propagation::Skip,
        follow_cname: false,
        ..Default::default()
    };
    (recorder, crate::dns::Dns01::new(providers, &settings))
}

async fn conversation(data: &[u8]) -> Outcome {
    let (leaf_pem, leaf_key) = leaf();
    let ca = ca_from(data);
    let manners = Manners::new("hostile", 1_000.0);
    let client =
        || -> Box<dyn HttpClient> { Box::new(PoliteClient::over(ca.clone(), manners.clone())) };
    let account = crate::acme::retry("newAccount", || new_account(client())).await;
    let requests = |ca: &HostileCa| ca.state.lock().expect("state").requests;
    let (account, _credentials) = match account {
        Ok(a) => a,
        Err(e) => {
            check_error(&e, &leaf_key);
            return Outcome {
                issued: Err(e),
                txt_written: 0,
                txt_left: 0,
                requests: requests(&ca),
                ari_retry: None,
            };
        }
    };
    let issuer = Issuer::over(
        "hostile",
        account,
        &format!("{BASE}/dir"),
        Duration::from_secs(60),
        1,
    );
    // ARI first, as a run asks before deciding to renew: the window the CA
    // suggests, however absurd, gives a moment.
    let der = crate::x509::pem_chain(&leaf_pem).expect("pem")[0].clone();
    let der = rustls_pki_types::CertificateDer::from(der);
    let id = instant_acme::CertificateIdentifier::try_from(&der).expect("the leaf has an AKI");
    let ari = issuer
        .account()
        .renewal_info(&id)
        .await
        .map(|(info, retry)| {
            let w = info.suggested_window;
            let _ = crate::acme::ari::pick(w.start, w.end, 0.5);
            retry
        });
    let spec: crate::config::CertificateSpec = serde_json::from_value(json!({
        "name": "hostile",
        "domains": ["a.example.test", "*.example.test"],
    }))
    .expect("spec");
    let (recorder, dns) = memory_dns(&spec.dns.provider);
    let cancel = tokio_util::sync::CancellationToken::new();
    let issued = issuer.issue(&spec, None, None, None, &dns, &cancel).await;
    let issued = match issued {
        Ok(set) => {
            let chain = crate::x509::pem_chain(&set.cert_pem).expect("an issued leaf is PEM");
            assert_eq!(chain.len(), 1, "cert.pem holds the leaf only");
            assert!(set.key_pem.expose().contains("PRIVATE KEY"));
            Ok(())
        }
        Err(e) => {
            check_error(&e, &leaf_key);
            Err(e)
        }
    };

    let txt_left = recorder.live.lock().expect("live").len();
    assert_eq!(
        txt_left,
        0,
        "TXT records left behind: {:?} ({issued:?})",
        recorder.live.lock().expect("live")
    );
    let txt_written = *recorder.written.lock().expect("written");
    Outcome {
        issued,
        txt_written,
        txt_left,
        requests: requests(&ca),
        ari_retry: ari.ok(),
    }
}

fn check_error(e: &dyn std::fmt::Display, key_pem: &str) {
    let text = e.to_string();
    assert!(!text.contains("PRIVATE KEY"), "key material in {text}");
    let body: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(!text.contains(&body[..32]), "key material in {text}");
}

#[cfg(test)]
mod tests;
