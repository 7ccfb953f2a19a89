//! What Route53 accepts and how it answers, apart from the calls: how
//! long to gather a batch, how to split one, how it spells names.

use crate::config::domain::normalize_name;
use aws_sdk_route53::types::{Change, ChangeAction};
use std::time::Duration;

/// How long the batcher waits for more requests after the last one, and at
/// most after the first one, while changes go INSYNC at once; a slower
/// Route53 (real changes take up to a minute) is waited for longer, since
/// a second or two more of gathering is little against the INSYNC wait
/// every extra change costs the calls it makes.
pub(super) const BATCH_IDLE: Duration = Duration::from_millis(60);
pub(super) const BATCH_MAX: Duration = Duration::from_millis(400);
pub(super) const BATCH_IDLE_MOST: Duration = Duration::from_millis(1500);
pub(super) const BATCH_MAX_MOST: Duration = Duration::from_secs(6);
/// Removals are gathered longer: only the end of the run waits for them
/// (the order is finalized meanwhile).
pub(super) const CLEANUP_MAX_MOST: Duration = Duration::from_secs(8);

/// Route53's limits on one ChangeResourceRecordSets request: ResourceRecord
/// elements and characters of values (an UPSERT counts twice).
pub(super) const BATCH_RECORDS: usize = 1000;
pub(super) const BATCH_CHARS: usize = 32_000;

/// How long to gather presents into one batch: after the last one, and at
/// most, when changes take `insync` to go INSYNC (a tenth of it at most:
/// 2 s at a 20 s INSYNC).
pub(super) fn batch_window(insync: Duration) -> (Duration, Duration) {
    (
        (insync / 40).clamp(BATCH_IDLE, BATCH_IDLE_MOST),
        (insync / 10).clamp(BATCH_MAX, BATCH_MAX_MOST),
    )
}

/// How long to gather removals: twice the presents' idle time, and at most
/// an eighth of the INSYNC time (2.5 s at 20 s).
pub(super) fn cleanup_window(insync: Duration) -> (Duration, Duration) {
    let (idle, _) = batch_window(insync);
    (idle * 2, (insync / 8).clamp(BATCH_MAX, CLEANUP_MAX_MOST))
}

/// A name as Route53 returns it, compared like ours: Route53 escapes
/// characters outside `a-z0-9-_.` as `\ddd` octal (`\052.example.com.` is
/// `*.example.com`).
pub(super) fn route53_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        match code {
            Some(c) => {
                out.push(c as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    normalize_name(&out)
}

/// Splits changes into requests Route53 accepts: at most `BATCH_RECORDS`
/// ResourceRecord elements and `BATCH_CHARS` characters of values each
/// (an UPSERT counted twice). One change is never split.
pub(super) fn chunks(changes: Vec<Change>) -> Vec<Vec<Change>> {
    let mut out: Vec<Vec<Change>> = Vec::new();
    let (mut records, mut chars) = (0, 0);
    for change in changes {
        let weight = if change.action() == &ChangeAction::Upsert {
            2
        } else {
            1
        };
        let values = change
            .resource_record_set()
            .map(|s| s.resource_records())
            .unwrap_or_default();
        let r = weight * values.len();
        let c = weight * values.iter().map(|v| v.value().len()).sum::<usize>();
        if out.is_empty() || records + r > BATCH_RECORDS || chars + c > BATCH_CHARS {
            out.push(Vec::new());
            (records, chars) = (0, 0);
        }
        records += r;
        chars += c;
        out.last_mut().expect("a chunk").push(change);
    }
    out
}
