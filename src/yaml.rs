//! Parsing YAML files into typed structs with errors that point at the spot.
//!
//! Every file certkeeper reads is written by a person, so every error must
//! say `file:line:column: field: what is wrong`. yaml_serde already tracks the
//! field path and location; this module only puts them in that order.

use serde::de::DeserializeOwned;
use std::fmt;
use std::path::{Path, PathBuf};

/// A problem found in one file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Field path such as `certificates[2].domains[1]`, empty when unknown.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Deserializes `text` (read from `file`) into `T`.
pub fn parse<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, Located> {
    yaml_serde::from_str(text).map_err(|e| {
        let mut located = from_error(file, &e);
        if located.message.starts_with("duplicate field `") {
            locate_duplicate(text, &mut located);
        } else if located.field.is_empty() {
            locate_value(text, &mut located);
        }
        located
    })
}

/// serde reports a duplicate key at the start of its mapping: point at the
/// second occurrence of the key instead, and say where the first one is.
fn locate_duplicate(text: &str, located: &mut Located) {
    let Some(key) = located
        .message
        .strip_prefix("duplicate field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(k, _)| k.to_string())
    else {
        return;
    };
    let (Some(start), Some(column)) = (located.line, located.column) else {
        return;
    };
    let indent = column - 1;
    let mut seen = Vec::new();
    for (idx, line) in text.lines().enumerate().skip(start - 1) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let at = line.len() - trimmed.len();
        // A line less indented than the mapping ends it (its first line
        // may start with a list's "- ").
        if at < indent && idx + 1 != start {
            break;
        }
        let rest = if idx + 1 == start {
            &line[indent.min(line.len())..]
        } else {
            trimmed
        };
        if at.max(indent) == indent || idx + 1 == start {
            let unquoted = rest.trim_start_matches(['"', '\'']);
            if unquoted.strip_prefix(key.as_str()).is_some_and(|r| {
                r.trim_start_matches(['"', '\''])
                    .trim_start()
                    .starts_with(':')
            }) {
                seen.push(idx + 1);
            }
        }
    }
    if let [first, second, ..] = seen[..] {
        located.line = Some(second);
        located.column = Some(indent + 1);
        located.field = if located.field.is_empty() {
            key.clone()
        } else {
            format!("{}.{key}", located.field)
        };
        located.message = format!("duplicate field `{key}` (first at line {first})");
    }
}

/// A value error at the top level (a custom deserializer's, like a bad
/// duration) comes without a path or a useful position: find the quoted
/// value it names and report the key on that line.
fn locate_value(text: &str, located: &mut Located) {
    let Some(value) = located
        .message
        .strip_prefix('"')
        .and_then(|rest| rest.split_once('"'))
        .map(|(v, _)| v.to_string())
    else {
        return;
    };
    if value.is_empty() {
        return;
    }
    let Some((idx, line)) = text
        .lines()
        .enumerate()
        .find(|(_, l)| !l.trim_start().starts_with('#') && l.contains(value.as_str()))
    else {
        return;
    };
    located.line = Some(idx + 1);
    located.column = line.find(value.as_str()).map(|c| c + 1);
    if let Some((key, _)) = line.split_once(':') {
        located.field = key.trim().trim_start_matches("- ").to_string();
    }
}

fn from_error(file: &Path, error: &yaml_serde::Error) -> Located {
    let location = error.location();
    let mut message = error.to_string();
    // yaml_serde appends " at line L column C"; we print the location up front.
    if let Some(idx) = message.find(" at line ") {
        message.truncate(idx);
    }
    // And prefixes the field path as "a.b[1]: "; split it into its own part.
    let (field, message) = match message.split_once(": ") {
        Some((path, rest)) if looks_like_path(path) => (path.to_string(), rest.to_string()),
        _ => (String::new(), message),
    };
    Located {
        file: file.to_path_buf(),
        line: location.as_ref().map(|l| l.line()),
        column: location.as_ref().map(|l| l.column()),
        field,
        message,
    }
}

fn looks_like_path(text: &str) -> bool {
    !text.is_empty()
        && !text.contains(' ')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.[]-".contains(c))
}

/// Finds the 1-based line and column of the first occurrence of `needle` at or
/// after line `from_line`, for errors found after deserialization (where serde
/// no longer knows positions). Falls back to `from_line` when not found.
pub fn find_line(text: &str, needle: &str, from_line: usize) -> (usize, usize) {
    for (idx, line) in text.lines().enumerate().skip(from_line.saturating_sub(1)) {
        if let Some(col) = line.find(needle) {
            // Point at the opening quote of a quoted scalar, as yaml does.
            let quoted = col > 0 && matches!(line.as_bytes()[col - 1], b'"' | b'\'');
            return (idx + 1, if quoted { col } else { col + 1 });
        }
    }
    (from_line.max(1), 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        items: Vec<Item>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        name: String,
    }

    #[test]
    fn duplicate_key_points_at_its_second_line() {
        let err = parse::<Doc>(
            Path::new("s.yaml"),
            "items: []\n# note\nitems:\n  - name: a\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "s.yaml:3:1: items: duplicate field `items` (first at line 1)"
        );
        let nested = "items:\n  - name: a\n    name: b\n";
        let err = parse::<Doc>(Path::new("s.yaml"), nested).unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
        assert!(err.message.contains("first at line 2"), "{err}");
        assert_eq!(err.field, "items[0].name", "{err}");
    }

    #[test]
    fn unknown_field_names_file_line_and_path() {
        let text = "items:\n  - name: a\n  - name: b\n    colour: red\n";
        let err = parse::<Doc>(Path::new("x.yaml"), text).unwrap_err();
        assert_eq!(err.line, Some(4));
        assert_eq!(err.field, "items[1]");
        assert!(err.message.contains("unknown field `colour`"), "{err}");
        assert!(err.to_string().starts_with("x.yaml:4:"), "{err}");
    }

    #[test]
    fn syntax_error_has_location() {
        let err = parse::<Doc>(Path::new("x.yaml"), "items: [\n").unwrap_err();
        assert!(err.line.is_some(), "{err}");
    }

    #[test]
    fn find_line_skips_earlier_lines() {
        let text = "a: x\nb: x\n";
        assert_eq!(find_line(text, "x", 2), (2, 4));
        assert_eq!(find_line(text, "zzz", 2), (2, 1));
    }
}

/// Where every node of a YAML document starts, by field path
/// (`certificates[2].domains[1]`): sequence items at their value, mapping
/// entries at their key. serde forgets positions once a value is
/// deserialized; this map lets every later error point at its line.
pub fn locations(text: &str) -> std::collections::HashMap<String, (usize, usize)> {
    use saphyr_parser::{Event, Parser};

    enum Frame {
        Map { path: String, key: Option<String> },
        Seq { path: String, next: usize },
    }

    fn child(parent: &str, key: &str) -> String {
        if parent.is_empty() {
            key.to_string()
        } else {
            format!("{parent}.{key}")
        }
    }

    let mut out = std::collections::HashMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    // Returns the path of a node that starts here, or None for a mapping key.
    let mut place =
        |stack: &mut Vec<Frame>, pos: (usize, usize), scalar: Option<&str>| -> Option<String> {
            match stack.last_mut() {
                None => Some(String::new()),
                Some(Frame::Seq { path, next }) => {
                    let p = format!("{path}[{next}]");
                    *next += 1;
                    out.insert(p.clone(), pos);
                    Some(p)
                }
                Some(Frame::Map { path, key }) => match key.take() {
                    Some(k) => {
                        let p = child(path, &k);
                        // A scalar value is pointed at itself; a nested
                        // block at its key (its first line may be far below).
                        if scalar.is_some()
                            && let Some(key_pos) = out.insert(p.clone(), pos)
                        {
                            out.insert(format!("{p}{KEY_SUFFIX}"), key_pos);
                        }
                        Some(p)
                    }
                    None => {
                        let k = scalar.unwrap_or("?").to_string();
                        out.insert(child(path, &k), pos);
                        *key = Some(k);
                        None
                    }
                },
            }
        };
    for item in Parser::new_from_str(text) {
        let Ok((event, span)) = item else { break };
        let pos = (span.start.line(), span.start.col() + 1);
        match event {
            Event::Scalar(value, ..) => {
                place(&mut stack, pos, Some(&value));
            }
            Event::Alias(_) => {
                place(&mut stack, pos, None);
            }
            Event::MappingStart(..) => {
                let path = place(&mut stack, pos, None).unwrap_or_default();
                stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = place(&mut stack, pos, None).unwrap_or_default();
                stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            _ => {}
        }
    }
    out
}

/// Suffix of the entries that hold a mapping key's own position.
pub const KEY_SUFFIX: &str = "#key";

/// The position of the key of mapping entry `path` (for "unknown field").
pub fn locate_key(
    map: &std::collections::HashMap<String, (usize, usize)>,
    path: &str,
) -> Option<(usize, usize)> {
    map.get(&format!("{path}{KEY_SUFFIX}"))
        .copied()
        .or_else(|| locate(map, path))
}

/// The location of `path`, or of its nearest ancestor that has one.
pub fn locate(
    map: &std::collections::HashMap<String, (usize, usize)>,
    path: &str,
) -> Option<(usize, usize)> {
    let mut p = path.to_string();
    loop {
        if let Some(pos) = map.get(&p) {
            return Some(*pos);
        }
        let cut = p.rfind(['.', '['])?;
        p.truncate(cut);
    }
}

#[cfg(test)]
mod location_tests {
    use super::*;

    #[test]
    fn maps_paths_to_positions() {
        let text = "certificates:\n  - name: web\n    domains:\n      - a.example.test\n      - \"*.b.example.test\"\n    dns: {provider: route53}\n";
        let map = locations(text);
        assert_eq!(map["certificates"], (1, 1));
        assert_eq!(map["certificates[0]"], (2, 5));
        assert_eq!(map["certificates[0].name"], (2, 11));
        assert_eq!(locate_key(&map, "certificates[0].name"), Some((2, 5)));
        assert_eq!(map["certificates[0].domains"], (3, 5));
        assert_eq!(map["certificates[0].domains[1]"], (5, 9));
        assert_eq!(map["certificates[0].dns.provider"], (6, 21));
        assert_eq!(locate(&map, "certificates[0].domains[7]"), Some((3, 5)));
        assert_eq!(locate(&map, "nothing.here"), None);
    }
}
