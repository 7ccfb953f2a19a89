//! Hostname rules for certificate domains (RFC 1123 labels, wildcards).

use std::collections::BTreeMap;

/// A domain the config cannot use. Messages are whole sentences quoting
/// the domain, ready to follow `file:line: field: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("domain is empty")]
    Empty,
    #[error("{0:?} is not a valid internationalised domain name")]
    Idna(String),
    #[error("{domain:?} {problem}")]
    Invalid { domain: String, problem: Problem },
}

/// What is wrong with a domain, after its quoted name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("is not ASCII; write internationalised names in punycode (xn--...)")]
    NotAscii,
    #[error("must be lower case")]
    NotLowerCase,
    #[error("is longer than 253 characters")]
    TooLong,
    #[error("is not a fully qualified name")]
    NotQualified,
    #[error("is not a valid wildcard (only the whole leftmost label may be '*')")]
    BadWildcard,
    #[error("is a wildcard on a top-level domain")]
    WildcardOnTld,
    #[error("has an empty label")]
    EmptyLabel,
    #[error("has a label longer than 63 characters")]
    LongLabel,
    #[error("has a label that starts or ends with '-'")]
    Hyphen,
    #[error("has a character other than a-z, 0-9 and '-' in label {0:?}")]
    Character(String),
}

/// Turns a domain as written into its canonical form (lower case, no
/// trailing dot, internationalised labels in punycode) and checks it.
pub fn normalize(domain: &str) -> Result<String, DomainError> {
    let trimmed = domain.trim().trim_end_matches('.');
    let (wildcard, rest) = match trimmed.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, trimmed),
    };
    let ascii = if rest.is_ascii() {
        rest.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii_strict(rest).map_err(|_| DomainError::Idna(domain.to_string()))?
    };
    let canonical = if wildcard {
        format!("*.{ascii}")
    } else {
        ascii
    };
    // The error quotes the domain as it was written.
    validate(&canonical).map_err(|e| match e {
        DomainError::Invalid { problem, .. } => DomainError::Invalid {
            domain: domain.to_string(),
            problem,
        },
        other => other,
    })?;
    Ok(canonical)
}

/// Checks one domain in canonical form.
pub fn validate(domain: &str) -> Result<(), DomainError> {
    let invalid = |problem| {
        Err(DomainError::Invalid {
            domain: domain.to_string(),
            problem,
        })
    };
    if domain.is_empty() {
        return Err(DomainError::Empty);
    }
    if !domain.is_ascii() {
        return invalid(Problem::NotAscii);
    }
    if domain != domain.to_ascii_lowercase() {
        return invalid(Problem::NotLowerCase);
    }
    let name = domain.strip_suffix('.').unwrap_or(domain);
    if name.len() > 253 {
        return invalid(Problem::TooLong);
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return invalid(Problem::NotQualified);
    }
    for (i, label) in labels.iter().enumerate() {
        if *label == "*" {
            if i != 0 {
                return invalid(Problem::BadWildcard);
            }
            if labels.len() < 3 {
                return invalid(Problem::WildcardOnTld);
            }
            continue;
        }
        if label.contains('*') {
            return invalid(Problem::BadWildcard);
        }
        if label.is_empty() {
            return invalid(Problem::EmptyLabel);
        }
        if label.len() > 63 {
            return invalid(Problem::LongLabel);
        }
        if label.starts_with('-') || label.ends_with('-') {
            return invalid(Problem::Hyphen);
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return invalid(Problem::Character(label.to_string()));
        }
    }
    Ok(())
}

/// The name the DNS-01 TXT record goes at: `_acme-challenge.` plus the domain
/// without its wildcard label (a wildcard and its apex share one name).
pub fn challenge_name(domain: &str) -> String {
    let base = domain.strip_prefix("*.").unwrap_or(domain);
    format!("_acme-challenge.{}", base.trim_end_matches('.'))
}

/// A CN or SAN template that does not render to a usable name.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct NameError {
    /// `cn` or `san[i]`.
    pub field: String,
    #[source]
    pub reason: NameReason,
}

#[derive(Debug, thiserror::Error)]
pub enum NameReason {
    #[error(transparent)]
    Template(#[from] crate::template::TemplateError),
    #[error(transparent)]
    Domain(#[from] DomainError),
}

/// Renders the CN and SAN templates with `vars` and checks each name with
/// the config's hostname rules.
pub fn render_names(
    cn_template: &str,
    san_templates: &[String],
    vars: &BTreeMap<String, String>,
) -> Result<(String, Vec<String>), NameError> {
    let at = |field: &str| {
        let field = field.to_string();
        move |e: NameReason| NameError { field, reason: e }
    };
    let one = |field: &str, template: &str| -> Result<String, NameError> {
        let text = crate::template::render(template, vars).map_err(|e| at(field)(e.into()))?;
        normalize(&text).map_err(|e| at(field)(e.into()))
    };
    // The CN keeps the case it was written in (MESH mailbox ids are upper
    // case in the CA's records); it is checked in its canonical form.
    one("cn", cn_template)?;
    let cn = crate::template::render(cn_template, vars)
        .map_err(|e| at("cn")(e.into()))?
        .trim()
        .trim_end_matches('.')
        .to_string();
    let mut sans = Vec::new();
    for (i, t) in san_templates.iter().enumerate() {
        let san = one(&format!("san[{i}]"), t)?;
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    Ok((cn, sans))
}

/// Lower case, no trailing dot: how names are compared everywhere.
pub fn normalize_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_normal_names() {
        for d in [
            "example.test",
            "*.example.test",
            "a-b.c1.example.test",
            "xn--bcher-kva.example",
        ] {
            validate(d).unwrap_or_else(|e| panic!("{d}: {e}"));
        }
    }

    #[test]
    fn rejects_bad_names() {
        for d in [
            "",
            "localhost",
            "*.*.example.com",
            "a.*.example.com",
            "w*.example.com",
            "-a.example.com",
            "a..example.com",
            "UPPER.example.com",
            "bücher.example",
            "a_b.example.com",
            "*.com",
        ] {
            assert!(validate(d).is_err(), "{d} accepted");
        }
        let long = format!("{}.example.com", "a".repeat(64));
        assert!(matches!(
            validate(&long),
            Err(DomainError::Invalid {
                problem: Problem::LongLabel,
                ..
            })
        ));
        assert!(validate(&long).unwrap_err().to_string().contains("63"));
    }

    #[test]
    fn normalizes_case_dots_and_idna() {
        assert_eq!(normalize("WWW.Example.TEST.").unwrap(), "www.example.test");
        assert_eq!(
            normalize("bücher.example").unwrap(),
            "xn--bcher-kva.example"
        );
        assert_eq!(
            normalize("*.bücher.example").unwrap(),
            "*.xn--bcher-kva.example"
        );
        let err = normalize("*.*.Example.com").unwrap_err().to_string();
        assert!(
            err.contains("\"*.*.Example.com\" is not a valid wildcard"),
            "{err}"
        );
        assert!(normalize("a_b.example.com").is_err());
    }

    #[test]
    fn wildcard_and_apex_share_challenge_name() {
        assert_eq!(
            challenge_name("*.example.test"),
            "_acme-challenge.example.test"
        );
        assert_eq!(
            challenge_name("example.test"),
            "_acme-challenge.example.test"
        );
    }
}
