//! The bottom of the configuration module: the issue types every section reports into and the
//! small helpers several sections share. It imports no other file of `config`, so each section
//! can use it without a file cycle through `mod.rs`.

use std::fmt;

/// One problem in the configuration, with the JSON path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// All the problems found in a configuration document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigIssue>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("; "))
    }
}

/// The full path of a field a deserialisation error is about: serde reports a missing field at
/// its parent, with the field's name only in the message.
pub(crate) fn field_path(parent: String, message: &str) -> String {
    let parent = if parent == "." { String::new() } else { parent };
    let missing = message.strip_prefix("missing field `").and_then(|rest| rest.split('`').next());
    match missing {
        Some(field) if parent.is_empty() => field.to_string(),
        Some(field) => format!("{parent}.{field}"),
        None => parent,
    }
}

/// The names of providers, targets, tenants and rules: letters, digits, '-', '_' and '.'.
pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The serde default of flags that are on unless switched off.
pub(super) fn yes() -> bool {
    true
}

/// A value that ends up in an upstream URL or header: control characters (CR, LF, NUL...) would
/// split a header or the request line, so they are refused when the document is validated rather
/// than failing (or worse) at request time.
pub(super) fn check_no_control(value: &str, path: impl FnOnce() -> String, issue: &mut dyn FnMut(String, String)) {
    if value.chars().any(char::is_control) {
        issue(path(), "must not contain control characters (CR, LF, ...)".into());
    }
}
