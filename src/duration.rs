//! Human durations in config files (`90s`, `15m`, `12h`, `30d`).
//!
//! Kept tiny on purpose: operators write these by hand, so the accepted
//! grammar is one integer and one unit, nothing clever.

use std::time::Duration;

/// A duration that is not `<integer><unit>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{0:?} has no unit (use s, m, h or d, e.g. \"30d\")")]
    NoUnit(String),
    #[error("{0:?} does not start with a whole number")]
    NotANumber(String),
    #[error("{text:?} has unknown unit {unit:?} (use ms, s, m, h or d)")]
    UnknownUnit { text: String, unit: String },
}

/// Parses `<integer><unit>` with unit one of `ms`, `s`, `m`, `h`, `d`.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| DurationError::NoUnit(text.to_string()))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| DurationError::NotANumber(text.to_string()))?;
    let secs = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => {
            return Err(DurationError::UnknownUnit {
                text: text.to_string(),
                unit: unit.to_string(),
            });
        }
    };
    Ok(Duration::from_secs(secs))
}

/// The shortest exact form: `90s`, `15m`, `2h`, `30d`.
pub fn format(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        // Below a second, or not a whole number of seconds: milliseconds
        // (1500ms, not 1s), so a duration reads back as it was written.
        _ if s == 0 || d.subsec_nanos() != 0 => format!("{}ms", d.as_millis()),
        s if s % 86400 == 0 => format!("{}d", s / 86400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Serde adapter so settings fields can be written as `"30d"`.
pub mod serde_human {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse(&text).map_err(serde::de::Error::custom)
    }

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse("30d").unwrap(), Duration::from_secs(30 * 86400));
    }

    #[test]
    fn formats_read_back_as_written() {
        for text in ["500ms", "1500ms", "30s", "90s", "5m", "2h", "30d", "0ms"] {
            assert_eq!(format(parse(text).unwrap()), text);
        }
        assert_eq!(format(Duration::from_secs(3600)), "1h");
        #[derive(serde::Serialize)]
        struct S {
            #[serde(with = "serde_human")]
            d: Duration,
        }
        let json = serde_json::to_string(&S {
            d: Duration::from_millis(500),
        })
        .unwrap();
        assert_eq!(json, r#"{"d":"500ms"}"#);
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse("30"), Err(DurationError::NoUnit("30".into())));
        assert!(parse("30").unwrap_err().to_string().contains("no unit"));
        assert!(parse("d").is_err());
        assert!(matches!(parse("3w"), Err(DurationError::UnknownUnit { unit, .. }) if unit == "w"));
        assert!(parse("-3d").is_err());
    }
}
