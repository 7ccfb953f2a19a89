//! One ACME order, from new-order to the certificate chain, DNS-01 only.

use super::{AcmeError, Issuer, MAX_ATTEMPTS, backoff, describe, retryable};
use crate::config::{CertificateSpec, domain::challenge_name};
use crate::dns::{Dns01, Placement, TxtRecord, ZoneHint};
use crate::pki::KeyType;
use crate::secret::Secret;
use crate::store::Issued;
use instant_acme::{
    Account, AuthorizationStatus, ChallengeStatus, ChallengeType, Identifier, NewOrder, Order,
    OrderStatus,
};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The order we are working on, re-read from the CA after a failed step.
struct OrderCtx<'a> {
    account: &'a Account,
    url: String,
    order: Option<Order>,
}

impl OrderCtx<'_> {
    async fn order(&mut self) -> Result<&mut Order, instant_acme::Error> {
        if self.order.is_none() {
            self.order = Some(self.account.order(self.url.clone()).await?);
        }
        Ok(self.order.as_mut().expect("just set"))
    }
}

/// Runs `$body` (an async expression using `$o: &mut Order`) with retries;
/// after a retryable failure the order is fetched again before the next try.
macro_rules! step {
    ($ctx:expr, $name:literal, |$o:ident| $body:expr) => {{
        let mut attempt = 0u32;
        loop {
            let result = async {
                let $o = $ctx.order().await?;
                $body.await
            }
            .await;
            match result {
                Ok(v) => break v,
                Err(e) if retryable(&e) && attempt + 1 < MAX_ATTEMPTS => {
                    tracing::debug!(event = "acme.retry", step = $name, attempt, error = %describe(&e));
                    $ctx.order = None;
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => {
                    return Err(AcmeError::Step {
                        step: $name,
                        message: describe(&e),
                        ended: super::Ended::of(&e),
                    })
                }
            }
        }
    }};
}

/// A DNS-01 challenge still to be answered.
struct Pending {
    domain: String,
    record: TxtRecord,
}

impl Issuer {
    /// Gets a certificate for `spec` with a fresh key. TXT records written on
    /// the way are removed on every path out of this function.
    pub async fn issue(
        &self,
        spec: &CertificateSpec,
        profile: Option<&str>,
        reuse_key: Option<&Secret>,
        replaces: Option<instant_acme::CertificateIdentifier<'static>>,
        dns: &Dns01,
        cancel: &CancellationToken,
    ) -> Result<Issued, AcmeError> {
        if let Some(profile) = profile {
            let offered: Vec<&str> = self.account.profiles().map(|p| p.name).collect();
            if !offered.contains(&profile) {
                return Err(AcmeError::Step {
                    step: "newOrder",
                    message: format!(
                        "{} does not offer the ACME profile {profile:?} (offered: {offered:?})",
                        self.directory_url
                    ),
                    ended: super::Ended::Other,
                });
            }
        }
        let key = match reuse_key {
            Some(pem) => rcgen::KeyPair::from_pem(pem.expose())
                .map_err(|e| AcmeError::Key(format!("stored key cannot be reused: {e}")))?,
            None => {
                let key_type = spec.key_type;
                let _turn = KEYGEN.acquire().await.expect("never closed");
                tokio::task::spawn_blocking(move || generate_key(key_type))
                    .await
                    .map_err(|e| AcmeError::Key(e.to_string()))??
            }
        };

        let identifiers: Vec<Identifier> = spec
            .domains
            .iter()
            .map(|d| Identifier::Dns(d.clone()))
            .collect();
        let mut ctx = OrderCtx {
            account: &self.account,
            url: String::new(),
            order: None,
        };
        let order_for = |replaces: Option<instant_acme::CertificateIdentifier<'static>>| {
            let mut new_order = NewOrder::new(&identifiers);
            if let Some(profile) = profile {
                new_order = new_order.profile(profile);
            }
            if let Some(id) = replaces {
                new_order = new_order.replaces(id);
            }
            new_order
        };
        // One newOrder at a time per CA (by default); the permit is held for
        // the request and its retries only.
        let permit = self
            .new_orders
            .acquire()
            .await
            .expect("the newOrder semaphore is never closed");
        let order = match replaces {
            Some(id) => {
                let with = order_for(Some(id));
                match super::account::retry("newOrder", || self.account.new_order(&with)).await {
                    Ok(order) => order,
                    Err(e) => {
                        // Some CAs refuse `replaces` (unknown or already
                        // replaced certificate): order once more without it.
                        tracing::warn!(event = "order.replaces.refused", cert = %spec.name, error = %e);
                        let without = order_for(None);
                        super::account::retry("newOrder", || self.account.new_order(&without))
                            .await?
                    }
                }
            }
            None => {
                let plain = order_for(None);
                super::account::retry("newOrder", || self.account.new_order(&plain)).await?
            }
        };
        drop(permit);
        ctx.url = order.url().to_string();
        ctx.order = Some(order);
        tracing::info!(event = "order.created", cert = %spec.name, domains = %spec.domains.join(","), order = %ctx.url);

        let pending = step!(ctx, "authorizations", |o| pending_challenges(o));
        let records: Vec<TxtRecord> = pending.iter().map(|p| p.record.clone()).collect();
        let zone = ZoneHint {
            zone_id: spec.dns.hosted_zone_id.clone(),
        };

        let mut placed = Placement::default();
        let validated = self
            .validate(
                &mut ctx,
                spec,
                dns,
                &zone,
                &pending,
                &records,
                &mut placed,
                cancel,
            )
            .await;
        // The records go while the order is finalized: the CA has seen
        // them, and a provider that gathers removals (Route53) may hold
        // them a few seconds to remove many with one change.
        let validated_ok = validated.is_ok();
        let cleanup = async {
            if placed.is_empty() {
                Ok(())
            } else {
                dns.cleanup(&spec.name, &placed).await
            }
        };
        let finish = async {
            validated?;
            let csr = csr(spec, &key)?;
            let status = step!(ctx, "finalize", |o| finalize_if_ready(o, &csr));
            tracing::debug!(event = "order.finalized", cert = %spec.name, status = ?status);
            let chain = self.poll_certificate(&mut ctx, cancel).await?;
            let (cert_pem, chain_pem) = split_chain(&chain)?;
            Ok::<_, AcmeError>(Issued {
                cert_pem,
                chain_pem,
                key_pem: Secret::new(key.serialize_pem()),
            })
        };
        let (cleaned, issued) = tokio::join!(cleanup, finish);
        if let (true, Err(e)) = (validated_ok, cleaned) {
            // Logged by Dns01 too; a valid order still gets its certificate.
            tracing::warn!(event = "dns.cleanup.failed", cert = %spec.name, error = %e);
        }
        issued
    }

    #[allow(clippy::too_many_arguments)]
    async fn validate(
        &self,
        ctx: &mut OrderCtx<'_>,
        spec: &CertificateSpec,
        dns: &Dns01,
        zone: &ZoneHint,
        pending: &[Pending],
        records: &[TxtRecord],
        placed: &mut Placement,
        cancel: &CancellationToken,
    ) -> Result<(), AcmeError> {
        if pending.is_empty() {
            return Ok(());
        }
        dns.present(
            &spec.name,
            &spec.dns.provider,
            zone,
            records,
            placed,
            cancel,
        )
        .await?;
        step!(ctx, "challenge", |o| set_ready(o));
        tracing::debug!(event = "challenge.ready", cert = %spec.name, challenges = pending.len());
        self.poll_ready(ctx, pending, cancel).await
    }

    async fn poll_ready(
        &self,
        ctx: &mut OrderCtx<'_>,
        pending: &[Pending],
        cancel: &CancellationToken,
    ) -> Result<(), AcmeError> {
        let deadline = Instant::now() + self.order_timeout;
        let mut delay = Duration::from_millis(250);
        loop {
            let state = step!(ctx, "poll order", |o| async {
                let state = o.refresh().await?;
                Ok::<_, instant_acme::Error>((state.status, state.error.clone()))
            });
            match state {
                (OrderStatus::Ready | OrderStatus::Processing | OrderStatus::Valid, _) => {
                    return Ok(());
                }
                (OrderStatus::Invalid, error) => {
                    let (detail, ca_dns) = step!(ctx, "authorizations", |o| failed_challenges(o));
                    if ca_dns {
                        return Err(AcmeError::CaDnsLookup { message: detail });
                    }
                    return Err(AcmeError::OrderFailed {
                        status: "invalid".into(),
                        message: if detail.is_empty() {
                            error
                                .map(|p| p.detail.unwrap_or_default())
                                .unwrap_or_default()
                        } else {
                            detail
                        },
                    });
                }
                _ => {}
            }
            if Instant::now() + delay > deadline {
                let domains: Vec<&str> = pending.iter().map(|p| p.domain.as_str()).collect();
                return Err(AcmeError::OrderFailed {
                    status: "pending".into(),
                    message: format!(
                        "CA did not validate {domains:?} within {}s",
                        self.order_timeout.as_secs()
                    ),
                });
            }
            tokio::select! {
                _ = cancel.cancelled() => return Err(AcmeError::Cancelled),
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    async fn poll_certificate(
        &self,
        ctx: &mut OrderCtx<'_>,
        cancel: &CancellationToken,
    ) -> Result<String, AcmeError> {
        let deadline = Instant::now() + self.order_timeout;
        let mut delay = Duration::from_millis(250);
        loop {
            let cert = step!(ctx, "certificate", |o| o.certificate());
            if let Some(chain) = cert {
                return Ok(chain);
            }
            if Instant::now() + delay > deadline {
                return Err(AcmeError::OrderFailed {
                    status: "processing".into(),
                    message: format!("no certificate within {}s", self.order_timeout.as_secs()),
                });
            }
            tokio::select! {
                _ = cancel.cancelled() => return Err(AcmeError::Cancelled),
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}

async fn pending_challenges(order: &mut Order) -> Result<Vec<Pending>, instant_acme::Error> {
    let mut out = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            // Already proven (authorization reuse): nothing to write.
            AuthorizationStatus::Valid => continue,
            _ => {
                return Err(instant_acme::Error::Str(
                    "authorization is neither pending nor valid",
                ));
            }
        }
        let ident = authz.identifier();
        // The raw identifier has no "*." even for wildcards; the TXT name is
        // built from it, never from the Display form.
        let Identifier::Dns(raw) = ident.identifier else {
            return Err(instant_acme::Error::Str("non-DNS identifier"));
        };
        let domain = ident.to_string();
        let record_name = challenge_name(raw);
        let challenge = authz
            .challenge(ChallengeType::Dns01)
            .ok_or(instant_acme::Error::Str("CA offered no dns-01 challenge"))?;
        out.push(Pending {
            domain,
            record: TxtRecord {
                name: record_name,
                value: challenge.key_authorization().dns_value(),
            },
        });
    }
    Ok(out)
}

async fn set_ready(order: &mut Order) -> Result<(), instant_acme::Error> {
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz?;
        if authz.status != AuthorizationStatus::Pending {
            continue;
        }
        let Some(mut challenge) = authz.challenge(ChallengeType::Dns01) else {
            continue;
        };
        // A retried step must not re-post a challenge already under way.
        if challenge.status == ChallengeStatus::Pending {
            challenge.set_ready().await?;
        }
    }
    Ok(())
}

/// Whether a failed challenge says the CA's own DNS lookup failed (a
/// timeout or SERVFAIL at its resolver) rather than that the value was
/// wrong or missing. RFC 8555's `dns` type is for exactly that (Let's
/// Encrypt: "DNS problem: query timed out"); Pebble reports it as
/// `unauthorized` "Error retrieving TXT records".
pub(crate) fn ca_lookup_failed(problem_type: Option<&str>, detail: Option<&str>) -> bool {
    let detail = detail.unwrap_or_default().to_ascii_lowercase();
    let wrong_value = ["incorrect txt record", "no txt record", "nxdomain"]
        .iter()
        .any(|w| detail.contains(w));
    if wrong_value {
        return false;
    }
    problem_type == Some("urn:ietf:params:acme:error:dns")
        || [
            "timeout",
            "timed out",
            "servfail",
            "error retrieving txt records",
        ]
        .iter()
        .any(|w| detail.contains(w))
}

/// What the CA said of each failed challenge, and whether every failure
/// was the CA's own DNS lookup (see `ca_lookup_failed`).
async fn failed_challenges(order: &mut Order) -> Result<(String, bool), instant_acme::Error> {
    let mut out = Vec::new();
    let mut all_dns = true;
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let authz = authz?;
        let domain = authz.identifier().to_string();
        for c in &authz.challenges {
            if let Some(p) = &c.error {
                all_dns &= ca_lookup_failed(p.r#type.as_deref(), p.detail.as_deref());
                out.push(format!(
                    "{domain}: {}",
                    p.detail.as_deref().unwrap_or("invalid")
                ));
            }
        }
    }
    Ok((out.join("; "), all_dns && !out.is_empty()))
}

async fn finalize_if_ready(
    order: &mut Order,
    csr: &[u8],
) -> Result<OrderStatus, instant_acme::Error> {
    let status = order.refresh().await?.status;
    if status == OrderStatus::Ready {
        order.finalize_csr(csr).await?;
        return Ok(order.state().status);
    }
    Ok(status)
}

/// Keys are made a few at a time, as many as there are cores (an RSA key
/// takes CPU): with every due certificate's order in flight, a thousand at
/// once would only crowd the machine and the blocking pool.
static KEYGEN: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| {
    tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
});

pub fn generate_key(key_type: KeyType) -> Result<rcgen::KeyPair, AcmeError> {
    crate::pki::generate_key(key_type).map_err(|e| AcmeError::Key(e.to_string()))
}

fn csr(spec: &CertificateSpec, key: &rcgen::KeyPair) -> Result<Vec<u8>, AcmeError> {
    let mut params = rcgen::CertificateParams::new(spec.domains.clone())
        .map_err(|e| AcmeError::Key(format!("CSR: {e}")))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(key)
        .map_err(|e| AcmeError::Key(format!("CSR: {e}")))?;
    Ok(csr.der().to_vec())
}

/// The CA returns leaf + intermediates; split off the leaf.
fn split_chain(pem: &str) -> Result<(String, String), AcmeError> {
    const END: &str = "-----END CERTIFICATE-----";
    let Some(idx) = pem.find(END) else {
        return Err(AcmeError::OrderFailed {
            status: "valid".into(),
            message: "CA returned no PEM certificate".into(),
        });
    };
    let (leaf, rest) = pem.split_at(idx + END.len());
    Ok((format!("{}\n", leaf.trim()), rest.trim_start().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_cas_own_lookup_failures_are_worth_a_new_order() {
        let dns = Some("urn:ietf:params:acme:error:dns");
        let unauthorized = Some("urn:ietf:params:acme:error:unauthorized");
        // Let's Encrypt and Pebble wordings of a failed lookup at the CA.
        assert!(ca_lookup_failed(
            dns,
            Some("DNS problem: query timed out looking up TXT for _acme-challenge.a.example")
        ));
        assert!(ca_lookup_failed(
            dns,
            Some("DNS problem: SERVFAIL looking up TXT for _acme-challenge.a.example")
        ));
        assert!(ca_lookup_failed(
            unauthorized,
            Some(
                "Error retrieving TXT records for DNS challenge (\"read udp 127.0.0.1:1->127.0.0.1:2: i/o timeout\")"
            )
        ));
        // A wrong or missing value is not transient: no second order.
        assert!(!ca_lookup_failed(
            dns,
            Some("DNS problem: NXDOMAIN looking up TXT for _acme-challenge.a.example")
        ));
        assert!(!ca_lookup_failed(
            unauthorized,
            Some("Incorrect TXT record \"x\" found at _acme-challenge.a.example")
        ));
        assert!(!ca_lookup_failed(
            unauthorized,
            Some("No TXT records found for DNS challenge")
        ));
        assert!(!ca_lookup_failed(
            Some("urn:ietf:params:acme:error:caa"),
            Some("CAA record forbids issuance")
        ));
        assert!(!ca_lookup_failed(None, None));
    }

    #[test]
    fn split_chain_separates_leaf() {
        let pem = "-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nB\n-----END CERTIFICATE-----\n";
        let (leaf, chain) = split_chain(pem).unwrap();
        assert_eq!(
            leaf,
            "-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n"
        );
        assert_eq!(
            chain,
            "-----BEGIN CERTIFICATE-----\nB\n-----END CERTIFICATE-----\n"
        );
        assert!(split_chain("junk").is_err());
    }

    #[test]
    fn every_key_type_generates() {
        for kt in [KeyType::EcdsaP256, KeyType::EcdsaP384, KeyType::Rsa2048] {
            let key = generate_key(kt).unwrap();
            assert!(key.serialize_pem().contains("PRIVATE KEY"));
        }
    }
}
