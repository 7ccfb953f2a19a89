//! Hostname rules for certificate domains (RFC 1123 labels, wildcards).

use icu_properties::props::GeneralCategory;
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
    #[error("has a label {0:?} that is not valid punycode")]
    Punycode(String),
    #[error(
        "has a label {label:?} ({unicode}) whose {code} is not allowed by IDNA2008 (symbols, emoji, punctuation and upper case are not)"
    )]
    NotIdna2008 {
        label: String,
        unicode: String,
        code: String,
    },
    #[error(
        "has a label {0:?} with '--' in the third and fourth place, which only punycode labels (xn--...) may have"
    )]
    ReservedHyphens(String),
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
        if let Err(problem) = check_hyphens34(label) {
            return invalid(problem);
        }
    }
    Ok(())
}

/// A label with `--` in its third and fourth place is an IDNA2008 A-label
/// (`xn--`) that must decode to a valid U-label, or a reserved one a CA
/// refuses (RFC 5891 §4.2.3.1, §5.4; Let's Encrypt checks the same).
fn check_hyphens34(label: &str) -> Result<(), Problem> {
    if label.get(2..4) != Some("--") {
        return Ok(());
    }
    let Some(encoded) = label.strip_prefix("xn--") else {
        return Err(Problem::ReservedHyphens(label.to_string()));
    };
    let bad_punycode = || Problem::Punycode(label.to_string());
    let unicode = idna::punycode::decode_to_string(encoded).ok_or_else(bad_punycode)?;
    // An A-label has one spelling, decodes to something not ASCII, and
    // passes UTS #46's validity checks (NFC, joiners, bidi).
    if unicode.is_ascii()
        || idna::punycode::encode_str(&unicode).as_deref() != Some(encoded)
        || idna::domain_to_ascii_strict(label).ok().as_deref() != Some(label)
    {
        return Err(bad_punycode());
    }
    let categories = icu_properties::CodePointMapData::<GeneralCategory>::new();
    let mut chars = unicode.chars();
    let leading_mark = chars.next().is_some_and(|c| {
        matches!(
            categories.get(c),
            GeneralCategory::NonspacingMark
                | GeneralCategory::SpacingMark
                | GeneralCategory::EnclosingMark
        )
    });
    let disallowed = unicode
        .chars()
        .find(|&c| !idna2008_allowed(categories.get(c), c));
    let culprit = if leading_mark {
        unicode.chars().next()
    } else {
        disallowed
    };
    match culprit {
        None => Ok(()),
        Some(c) => Err(Problem::NotIdna2008 {
            label: label.to_string(),
            unicode: unicode.clone(),
            code: format!("U+{:04X}", u32::from(c)),
        }),
    }
}

/// RFC 5892's LetterDigits (lower-case, other and modifier letters, marks,
/// decimal digits), the hyphen, and the contextual characters (joiners,
/// middle dots, geresh) whose context UTS #46 already checked. Symbols,
/// emoji, punctuation, spaces and upper case are DISALLOWED.
fn idna2008_allowed(category: GeneralCategory, c: char) -> bool {
    use GeneralCategory as G;
    matches!(
        category,
        G::LowercaseLetter
            | G::OtherLetter
            | G::ModifierLetter
            | G::NonspacingMark
            | G::SpacingMark
            | G::DecimalNumber
    ) || matches!(
        c,
        '-' | '\u{200C}'
            | '\u{200D}'
            | '\u{00B7}'
            | '\u{0375}'
            | '\u{05F3}'
            | '\u{05F4}'
            | '\u{30FB}'
    )
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
    fn punycode_labels_must_be_valid_idna2008() {
        // Valid A-labels: German, Japanese, Arabic.
        for d in [
            "xn--bcher-kva.example",
            "xn--wgv71a119e.example.test",
            "*.xn--mgbh0fb.example",
        ] {
            validate(d).unwrap_or_else(|e| panic!("{d}: {e}"));
        }
        let problem = |d: &str| match validate(d) {
            Err(DomainError::Invalid { problem, .. }) => problem,
            other => panic!("{d}: {other:?}"),
        };
        // Not punycode at all.
        assert!(matches!(
            problem("xn--zz.example.test"),
            Problem::Punycode(_)
        ));
        // An emoji (U+1F4A9) and a symbol (U+2603): valid in UTS #46, not
        // in IDNA2008, refused by the CA.
        let emoji = validate("xn--ls8h.example.test").unwrap_err().to_string();
        assert!(
            emoji.contains("U+1F4A9") && emoji.contains("IDNA2008"),
            "{emoji}"
        );
        assert!(matches!(
            problem("xn--n3h.example.test"),
            Problem::NotIdna2008 { .. }
        ));
        // Written in Unicode, the emoji is refused the same way.
        assert!(normalize("💩.example.test").is_err());
        // `--` in the third and fourth place is reserved for xn--.
        assert!(matches!(
            problem("ab--cd.example.test"),
            Problem::ReservedHyphens(_)
        ));
        validate("a--b.example.test").unwrap();
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
