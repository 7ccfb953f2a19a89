//! The ACME account: created once per CA, stored 0600 in the state dir, reused.

use super::http::{Manners, PoliteClient};
use super::{AcmeError, MAX_ATTEMPTS, backoff, describe, retryable};
use crate::settings::AcmeSettings;
use crate::store::Store;
use instant_acme::{Account, AccountBuilder, AccountCredentials, NewAccount};
use std::path::Path;
use std::sync::Arc;

/// An ACME CA we hold an account with.
pub struct Issuer {
    pub(super) name: String,
    pub(super) account: Account,
    pub(super) directory_url: String,
    pub(super) order_timeout: std::time::Duration,
    /// Permits for newOrder requests (`new_orders_in_flight`).
    pub(super) new_orders: Arc<tokio::sync::Semaphore>,
}

impl Issuer {
    pub fn directory_url(&self) -> &str {
        &self.directory_url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn account(&self) -> &Account {
        &self.account
    }

    /// Loads the stored account for this directory, or registers a new one.
    pub async fn load_or_create(
        name: &str,
        settings: &AcmeSettings,
        store: &Store,
    ) -> Result<Issuer, AcmeError> {
        if let Some(root) = &settings.root_ca_file {
            std::fs::read(root).map_err(|e| AcmeError::Root {
                path: root.display().to_string(),
                message: e.to_string(),
            })?;
        }
        // Every request to this CA, from every order, shares these manners.
        let manners = Manners::new(name, settings.requests_per_second.unwrap_or(20.0));
        let rel = account_file(&settings.directory_url);
        let path = store.root().join(&rel);
        let stored = store.read_state(&rel).map_err(|e| AcmeError::AccountFile {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let contact = settings.contact.as_deref().map(|c| {
            if c.contains(':') {
                c.to_string()
            } else {
                format!("mailto:{c}")
            }
        });
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let loaded = match stored {
            Some(bytes) => match serde_json::from_slice::<AccountCredentials>(&bytes) {
                Ok(creds) => {
                    stored_account(settings, &manners, store, &rel, creds, &contacts).await?
                }
                Err(e) => {
                    // An unreadable account file must not stop every
                    // renewal: the key in it is only our login at the CA.
                    set_aside(store, &rel, "corrupt", &e.to_string());
                    None
                }
            },
            None => None,
        };
        let account = match loaded {
            Some(account) => account,
            None => {
                let eab = external_account(settings)?;
                let (account, creds) = retry("newAccount", || async {
                    builder(settings.root_ca_file.as_deref(), &manners)?
                        .create(
                            &NewAccount {
                                contact: &contacts,
                                terms_of_service_agreed: true,
                                only_return_existing: false,
                            },
                            settings.directory_url.clone(),
                            eab.as_ref(),
                        )
                        .await
                })
                .await?;
                let json = serde_json::to_vec(&creds).expect("credentials serialize");
                store
                    .write_state(&rel, &json)
                    .map_err(|e| AcmeError::AccountFile {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    })?;
                tracing::info!(event = "acme.account.created", directory = %settings.directory_url, account = account.id());
                account
            }
        };
        Ok(Issuer::over(
            name,
            account,
            &settings.directory_url,
            settings.order_timeout,
            settings.new_orders_in_flight.unwrap_or(1),
        ))
    }

    /// An issuer over an account already loaded or registered, sending at
    /// most `new_orders_in_flight` newOrder requests at a time (at least
    /// one).
    pub fn over(
        name: &str,
        account: Account,
        directory_url: &str,
        order_timeout: std::time::Duration,
        new_orders_in_flight: usize,
    ) -> Issuer {
        Issuer {
            name: name.to_string(),
            account,
            directory_url: directory_url.to_string(),
            order_timeout,
            new_orders: Arc::new(tokio::sync::Semaphore::new(new_orders_in_flight.max(1))),
        }
    }

    /// Revokes a certificate (DER) issued by this CA.
    pub async fn revoke(
        &self,
        der: &[u8],
        reason: Option<instant_acme::RevocationReason>,
    ) -> Result<(), AcmeError> {
        let cert = rustls_pki_types::CertificateDer::from(der.to_vec());
        let request = instant_acme::RevocationRequest {
            certificate: &cert,
            reason,
        };
        retry("revokeCert", || self.account.revoke(&request)).await
    }

    /// Replaces the account key (RFC 8555 key change) and stores the new one.
    pub async fn rollover(&mut self, store: &Store) -> Result<(), AcmeError> {
        let creds = self
            .account
            .update_key()
            .await
            .map_err(|e| AcmeError::Step {
                step: "keyChange",
                message: describe(&e),
                ended: super::Ended::of(&e),
            })?;
        let rel = account_file(&self.directory_url);
        let json = serde_json::to_vec(&creds).expect("credentials serialize");
        store
            .write_state(&rel, &json)
            .map_err(|e| AcmeError::AccountFile {
                path: rel,
                message: e.to_string(),
            })
    }
}

/// The EAB key from its file or variable; never logged.
fn external_account(
    settings: &AcmeSettings,
) -> Result<Option<instant_acme::ExternalAccountKey>, AcmeError> {
    use base64::Engine;
    let Some(eab) = &settings.eab else {
        return Ok(None);
    };
    let fail = |message: String| AcmeError::AccountFile {
        path: format!("EAB key for {}", settings.directory_url),
        message,
    };
    let text = match (&eab.hmac_key_file, &eab.hmac_key_env) {
        (Some(file), _) => std::fs::read_to_string(file)
            .map_err(|e| fail(format!("cannot read {}: {e}", file.display())))?,
        (None, Some(var)) => std::env::var(var)
            .map_err(|_| fail(format!("environment variable {var} is not set")))?,
        (None, None) => return Err(fail("no hmac_key_file or hmac_key_env".into())),
    };
    let text = text.trim().trim_end_matches('=');
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
        .map_err(|_| fail("the HMAC key is not base64url".into()))?;
    Ok(Some(instant_acme::ExternalAccountKey::new(
        eab.key_id.clone(),
        &key,
    )))
}

/// The stored account, checked with the CA; `None` when it cannot be used
/// (a key that does not load, an account the CA does not know), after
/// setting the file aside.
async fn stored_account(
    settings: &AcmeSettings,
    manners: &Arc<Manners>,
    store: &Store,
    rel: &str,
    creds: AccountCredentials,
    contacts: &[&str],
) -> Result<Option<Account>, AcmeError> {
    let account = match retry("account", || async {
        builder(settings.root_ca_file.as_deref(), manners)?
            .from_credentials(clone_creds(&creds))
            .await
    })
    .await
    {
        Ok(account) => account,
        Err(AcmeError::Step {
            message,
            ended: super::Ended::BadKey,
            ..
        }) => {
            set_aside(store, rel, "corrupt", &message);
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    // One request per run that also keeps the contact in step with the
    // settings; it is how we learn that the CA no longer knows the account
    // (a CA reset, a deactivated account) before every order fails on it.
    match retry("account", || account.update_contacts(contacts)).await {
        Ok(()) => {
            tracing::debug!(event = "acme.account.loaded", directory = %settings.directory_url);
            Ok(Some(account))
        }
        Err(AcmeError::Step {
            message,
            ended: super::Ended::Problem(kind),
            ..
        }) if kind == "urn:ietf:params:acme:error:accountDoesNotExist" => {
            set_aside(store, rel, "unknown-to-ca", &message);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Moves an account file we can no longer use to `<file>.<why>-<unix time>`
/// (kept 0600 for an audit of which key held the account) and says so.
fn set_aside(store: &Store, rel: &str, why: &str, reason: &str) {
    let from = store.root().join(rel);
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let to = store.root().join(format!("{rel}.{why}-{stamp}"));
    match std::fs::rename(&from, &to) {
        Ok(()) => {
            tracing::warn!(event = "acme.account.set_aside", file = %from.display(), moved_to = %to.display(), why, reason, "registering a new account")
        }
        Err(e) => {
            tracing::warn!(event = "acme.account.set_aside", file = %from.display(), why, reason, error = %e, "cannot move it; registering a new account over it")
        }
    }
}

/// One file per directory URL, so switching CAs never reuses a foreign account.
fn account_file(directory_url: &str) -> String {
    let digest = crate::x509::sha256_hex(directory_url.as_bytes());
    format!("accounts/{}.json", &digest[..16])
}

fn builder(
    root: Option<&Path>,
    manners: &Arc<Manners>,
) -> Result<AccountBuilder, instant_acme::Error> {
    let client = PoliteClient::new(root, manners.clone())
        .map_err(|e| instant_acme::Error::Other(e.into()))?;
    Ok(Account::builder_with_http(Box::new(client)))
}

/// AccountCredentials is not Clone; a JSON round trip is.
fn clone_creds(c: &AccountCredentials) -> AccountCredentials {
    serde_json::from_value(serde_json::to_value(c).expect("serialize")).expect("deserialize")
}

pub(crate) async fn retry<T, F, Fut>(step: &'static str, mut f: F) -> Result<T, AcmeError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, instant_acme::Error>>,
{
    let mut attempt = 0;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if retryable(&e) && attempt + 1 < MAX_ATTEMPTS => {
                tracing::debug!(event = "acme.retry", step, attempt, error = %describe(&e));
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
            Err(e) => {
                return Err(AcmeError::Step {
                    step,
                    message: describe(&e),
                    ended: super::Ended::of(&e),
                });
            }
        }
    }
}
