//! Hostname rules for certificate domains (RFC 1123 labels, wildcards).

use std::collections::BTreeMap;

/// Turns a domain as written into its canonical form (lower case, no
/// trailing dot, internationalised labels in punycode) and checks it.
pub fn normalize(domain: &str) -> Result<String, String> {
    let trimmed = domain.trim().trim_end_matches('.');
    let (wildcard, rest) = match trimmed.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, trimmed),
    };
    let ascii = if rest.is_ascii() {
        rest.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii_strict(rest)
            .map_err(|_| format!("{domain:?} is not a valid internationalised domain name"))?
    };
    let canonical = if wildcard {
        format!("*.{ascii}")
    } else {
        ascii
    };
    validate(&canonical)
        .map_err(|e| e.replace(&format!("{canonical:?}"), &format!("{domain:?}")))?;
    Ok(canonical)
}

/// Checks one domain in canonical form. Errors are whole sentences
/// quoting the domain, ready to follow `file:line: field: `.
pub fn validate(domain: &str) -> Result<(), String> {
    if domain.is_empty() {
        return Err("domain is empty".into());
    }
    if !domain.is_ascii() {
        return Err(format!(
            "{domain:?} is not ASCII; write internationalised names in punycode (xn--...)"
        ));
    }
    if domain != domain.to_ascii_lowercase() {
        return Err(format!("{domain:?} must be lower case"));
    }
    let name = domain.strip_suffix('.').unwrap_or(domain);
    if name.len() > 253 {
        return Err(format!("{domain:?} is longer than 253 characters"));
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return Err(format!("{domain:?} is not a fully qualified name"));
    }
    for (i, label) in labels.iter().enumerate() {
        if *label == "*" {
            if i != 0 {
                return Err(format!(
                    "{domain:?} is not a valid wildcard (only the whole leftmost label may be '*')"
                ));
            }
            if labels.len() < 3 {
                return Err(format!("{domain:?} is a wildcard on a top-level domain"));
            }
            continue;
        }
        if label.contains('*') {
            return Err(format!(
                "{domain:?} is not a valid wildcard (only the whole leftmost label may be '*')"
            ));
        }
        if label.is_empty() {
            return Err(format!("{domain:?} has an empty label"));
        }
        if label.len() > 63 {
            return Err(format!("{domain:?} has a label longer than 63 characters"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "{domain:?} has a label that starts or ends with '-'"
            ));
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!(
                "{domain:?} has a character other than a-z, 0-9 and '-' in label {label:?}"
            ));
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

/// Renders the CN and SAN templates with `vars` and checks each name with
/// the config's hostname rules.
pub fn render_names(
    cn_template: &str,
    san_templates: &[String],
    vars: &BTreeMap<String, String>,
) -> Result<(String, Vec<String>), String> {
    let one = |field: &str, template: &str| -> Result<String, String> {
        let text = crate::template::render(template, vars).map_err(|e| format!("{field}: {e}"))?;
        normalize(&text).map_err(|e| format!("{field}: {e}"))
    };
    // The CN keeps the case it was written in (MESH mailbox ids are upper
    // case in the CA's records); it is checked in its canonical form.
    one("cn", cn_template)?;
    let cn = crate::template::render(cn_template, vars)
        .map_err(|e| format!("cn: {e}"))?
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
        assert!(validate(&long).unwrap_err().contains("63"));
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
        let err = normalize("*.*.Example.com").unwrap_err();
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
