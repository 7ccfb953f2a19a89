//! `{var}` templates (S3 keys, SSM names, file paths, alert messages, CSR
//! names). A leaf.

use std::collections::BTreeMap;

/// What is wrong with a template, named so a person can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unclosed '{{' in template {template:?}")]
    Unclosed { template: String },
    #[error("template {template:?} uses {{{key}}}, which is not defined (known: {known})")]
    Unknown {
        template: String,
        key: String,
        known: String,
    },
}

/// Replaces `{var}`; an unknown variable is an error, not an empty string,
/// so a typo never publishes to a wrong path.
pub fn render(template: &str, vars: &BTreeMap<String, String>) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after.find('}').ok_or_else(|| TemplateError::Unclosed {
            template: template.to_string(),
        })?;
        let key = &after[..end];
        let value = vars.get(key).ok_or_else(|| TemplateError::Unknown {
            template: template.to_string(),
            key: key.to_string(),
            known: vars.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_known_variables_and_names_unknown_ones() {
        let vars: BTreeMap<String, String> = [("name".to_string(), "www".to_string())]
            .into_iter()
            .collect();
        assert_eq!(
            render("certs/{name}/cert.pem", &vars).unwrap(),
            "certs/www/cert.pem"
        );
        assert_eq!(
            render("{nmae}", &vars).unwrap_err().to_string(),
            "template \"{nmae}\" uses {nmae}, which is not defined (known: name)"
        );
        assert_eq!(
            render("a{name", &vars).unwrap_err().to_string(),
            "unclosed '{' in template \"a{name\""
        );
    }
}
