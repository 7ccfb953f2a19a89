//! The registered domain of a name — its public suffix plus one label, as
//! Let's Encrypt counts certificates per registered domain — from the
//! Public Suffix List that Debian ships (package `publicsuffix`), read once
//! per process. Without the list every name's last two labels stand in for
//! it (a warning says so once): right for `example.com`, too coarse for
//! `example.co.uk`, which then shares a bucket with every `co.uk` name.

use std::collections::HashSet;
use std::sync::OnceLock;

/// Where Debian's `publicsuffix` package puts the list.
pub const DEBIAN_LIST: &str = "/usr/share/publicsuffix/public_suffix_list.dat";

/// The rules of a Public Suffix List, every name in ASCII (A-labels).
#[derive(Debug, Default)]
pub struct SuffixList {
    rules: HashSet<String>,
    /// `*.ck` is kept as `ck`: any one label under it is a suffix.
    wildcards: HashSet<String>,
    /// `!www.ck` is kept as `www.ck`: not a suffix despite a wildcard.
    exceptions: HashSet<String>,
}

impl SuffixList {
    /// Reads the list's format: one rule per line, the first word of the
    /// line; `//` comments and blank lines skipped; Unicode rules turned
    /// into A-labels to match names as certificates carry them.
    pub fn parse(text: &str) -> SuffixList {
        let mut list = SuffixList::default();
        for line in text.lines() {
            let Some(rule) = line.split_whitespace().next() else {
                continue;
            };
            if rule.starts_with("//") {
                continue;
            }
            let (set, rule) = if let Some(r) = rule.strip_prefix('!') {
                (&mut list.exceptions, r)
            } else if let Some(r) = rule.strip_prefix("*.") {
                (&mut list.wildcards, r)
            } else {
                (&mut list.rules, rule)
            };
            if let Ok(ascii) = idna::domain_to_ascii(rule) {
                set.insert(ascii);
            }
        }
        list
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.wildcards.is_empty()
    }

    /// How many labels at the end of `labels` form the public suffix: the
    /// longest matching rule, an exception winning over everything (less
    /// its first label), one label when no rule matches (the list's `*`).
    fn suffix_labels(&self, labels: &[&str]) -> usize {
        let n = labels.len();
        let mut best = 1;
        for i in 0..n {
            let candidate = labels[i..].join(".");
            let len = n - i;
            if self.exceptions.contains(&candidate) {
                return len - 1;
            }
            if self.rules.contains(&candidate) {
                best = best.max(len);
            }
            if i + 1 < n && self.wildcards.contains(&labels[i + 1..].join(".")) {
                best = best.max(len);
            }
        }
        best
    }

    /// `www.example.co.uk` -> `example.co.uk`; a wildcard name counts as
    /// its parent; `None` for a public suffix itself.
    pub fn registered_domain(&self, name: &str) -> Option<String> {
        let name = name
            .trim_end_matches('.')
            .trim_start_matches("*.")
            .to_ascii_lowercase();
        let labels: Vec<&str> = name.split('.').filter(|l| !l.is_empty()).collect();
        let suffix = self.suffix_labels(&labels);
        (labels.len() > suffix).then(|| labels[labels.len() - suffix - 1..].join("."))
    }
}

/// The system's list (Debian's), read on first use.
pub fn system() -> &'static SuffixList {
    static LIST: OnceLock<SuffixList> = OnceLock::new();
    LIST.get_or_init(|| match std::fs::read_to_string(DEBIAN_LIST) {
        Ok(text) => SuffixList::parse(&text),
        Err(e) => {
            tracing::warn!(
                event = "psl.missing",
                path = DEBIAN_LIST,
                error = %e,
                message = "no Public Suffix List (apt install publicsuffix): registered domains are taken as a name's last two labels"
            );
            SuffixList::default()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "// comment\n\ncom\nuk\nco.uk\n*.ck\n!www.ck\n*.kawasaki.jp\n!city.kawasaki.jp\njp\n公司.cn\ncn\n";

    #[test]
    fn registered_domains_follow_the_rules() {
        let l = SuffixList::parse(LIST);
        let r = |n: &str| l.registered_domain(n);
        assert_eq!(r("www.example.com").as_deref(), Some("example.com"));
        assert_eq!(r("*.Example.COM.").as_deref(), Some("example.com"));
        assert_eq!(r("a.b.example.co.uk").as_deref(), Some("example.co.uk"));
        assert_eq!(r("example.uk").as_deref(), Some("example.uk"));
        assert_eq!(r("co.uk"), None);
        assert_eq!(
            r("a.b.ck").as_deref(),
            Some("a.b.ck"),
            "*.ck: b.ck is a suffix"
        );
        assert_eq!(r("www.ck").as_deref(), Some("www.ck"), "!www.ck");
        assert_eq!(r("x.www.ck").as_deref(), Some("www.ck"));
        assert_eq!(r("a.city.kawasaki.jp").as_deref(), Some("city.kawasaki.jp"));
        assert_eq!(r("a.b.kawasaki.jp").as_deref(), Some("a.b.kawasaki.jp"));
        assert_eq!(
            r("shop.xn--55qx5d.cn").as_deref(),
            Some("shop.xn--55qx5d.cn"),
            "Unicode rules match A-labels"
        );
        assert_eq!(
            r("host.example.test").as_deref(),
            Some("example.test"),
            "an unlisted TLD is one label (the list's default rule)"
        );
    }

    #[test]
    fn without_a_list_the_last_two_labels_stand_in() {
        let l = SuffixList::default();
        assert!(l.is_empty());
        assert_eq!(
            l.registered_domain("a.example.co.uk").as_deref(),
            Some("co.uk")
        );
    }

    #[test]
    fn debians_list_when_installed() {
        let Ok(text) = std::fs::read_to_string(DEBIAN_LIST) else {
            return;
        };
        let l = SuffixList::parse(&text);
        assert_eq!(
            l.registered_domain("new.blog.example.co.uk").as_deref(),
            Some("example.co.uk")
        );
        assert_eq!(
            l.registered_domain("x.s3.amazonaws.com").as_deref(),
            Some("x.s3.amazonaws.com")
        );
    }
}
