//! Ordering a CA's `--chain` into the path above a certificate, with
//! every signature checked, and the keystore aliases of its CAs.

use x509_parser::prelude::*;

/// DER certificates on the path (issuer of the leaf first, root last),
/// and those of the pool that are not on it.
pub type ChainPath = (Vec<Vec<u8>>, Vec<Vec<u8>>);

/// Orders `pool` into the chain above `leaf`: each certificate's issuer
/// follows it, its signature checked, ending at a self-signed root.
/// Certificates of the pool not on the path are returned apart.
pub fn build_chain(leaf: &[u8], pool: &[Vec<u8>]) -> Result<ChainPath, ChainError> {
    fn parse(d: &[u8]) -> Result<X509Certificate<'_>, ChainError> {
        X509Certificate::from_der(d)
            .map(|(_, c)| c)
            .map_err(|e| ChainError::Corrupt(e.to_string()))
    }
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut current = leaf.to_vec();
    let mut used = vec![false; pool.len()];
    loop {
        let cert = parse(&current)?;
        if cert.subject().as_raw() == cert.issuer().as_raw() && cert.verify_signature(None).is_ok()
        {
            if path.is_empty() {
                return Err(ChainError::SelfSigned);
            }
            break;
        }
        let found = pool.iter().enumerate().find(|(i, c)| {
            !used[*i]
                && parse(c).is_ok_and(|issuer| {
                    issuer.subject().as_raw() == cert.issuer().as_raw()
                        && cert.verify_signature(Some(issuer.public_key())).is_ok()
                })
        });
        let Some((i, issuer_der)) = found else {
            let named = pool.iter().any(|c| {
                parse(c).is_ok_and(|issuer| issuer.subject().as_raw() == cert.issuer().as_raw())
            });
            let (subject, issuer) = (cert.subject().to_string(), cert.issuer().to_string());
            return Err(if named {
                ChainError::BadSignature { subject, issuer }
            } else if pool.is_empty() {
                ChainError::NoChain { issuer }
            } else {
                ChainError::NoRoot { subject, issuer }
            });
        };
        let issuer = parse(issuer_der)?;
        if issuer
            .basic_constraints()
            .ok()
            .flatten()
            .is_none_or(|bc| !bc.value.ca)
            && issuer.subject().as_raw() != issuer.issuer().as_raw()
        {
            return Err(ChainError::NotCa(issuer.subject().to_string()));
        }
        if !issuer.validity().is_valid() {
            return Err(ChainError::NotValidNow {
                subject: issuer.subject().to_string(),
                from: issuer.validity().not_before.to_string(),
                to: issuer.validity().not_after.to_string(),
            });
        }
        used[i] = true;
        path.push(issuer_der.clone());
        current = issuer_der.clone();
        if path.len() > 10 {
            return Err(ChainError::TooLong);
        }
    }
    let unused = pool
        .iter()
        .zip(used)
        .filter(|(_, u)| !u)
        .map(|(c, _)| c.clone())
        .collect();
    Ok((path, unused))
}

/// Why `--chain` does not make a chain for the certificate.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("corrupt certificate ({0})")]
    Corrupt(String),
    #[error("the certificate is self-signed, not issued by a CA")]
    SelfSigned,
    #[error(
        "the signature of {subject:?} does not verify with the key of its issuer {issuer:?} from --chain"
    )]
    BadSignature { subject: String, issuer: String },
    #[error("no chain given: pass the sub CA and root CA that issued it ({issuer:?}) with --chain")]
    NoChain { issuer: String },
    #[error(
        "the chain does not reach a root: nothing in --chain issued {subject:?} (its issuer is {issuer:?}); pass that CA's certificate with --chain"
    )]
    NoRoot { subject: String, issuer: String },
    #[error("{0:?} in --chain is not a CA certificate (no basicConstraints CA:TRUE)")]
    NotCa(String),
    #[error("the CA certificate {subject:?} in --chain is not valid now (valid {from} to {to})")]
    NotValidNow {
        subject: String,
        from: String,
        to: String,
    },
    #[error("the chain is longer than 10 certificates")]
    TooLong,
}

/// Keystore aliases for CA certificates: the self-signed one is `rootca`,
/// the others `subca`, `subca2`, … in chain order (the MESH runbook's names).
pub fn ca_aliases(chain: &[Vec<u8>]) -> Vec<(String, Vec<u8>)> {
    let mut subs = 0;
    chain
        .iter()
        .map(|der| {
            let self_signed = X509Certificate::from_der(der)
                .is_ok_and(|(_, c)| c.subject().as_raw() == c.issuer().as_raw());
            let alias = if self_signed {
                "rootca".to_string()
            } else {
                subs += 1;
                if subs == 1 {
                    "subca".to_string()
                } else {
                    format!("subca{subs}")
                }
            };
            (alias, der.clone())
        })
        .collect()
}
