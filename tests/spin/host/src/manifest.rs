//! The parts of a Spin manifest (`spin_manifest_version = 2`) this host honours: application
//! variables (defaults, `required`, `secret`), the single HTTP trigger's component, its `source`,
//! `allowed_outbound_hosts`, `key_value_stores`, `sqlite_databases` and component variables (`{{ name }}` templates).
//!
//! Variable values resolve the way `spin up` resolves them: `--variable name=value` (or
//! `name=@file`), then the environment variable `SPIN_VARIABLE_<NAME>`, then the manifest's
//! `default`; a `required` variable without a value is a startup error.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

#[derive(Deserialize)]
struct RawManifest {
    spin_manifest_version: u32,
    #[serde(default)]
    variables: BTreeMap<String, RawVariable>,
    trigger: RawTriggers,
    component: BTreeMap<String, RawComponent>,
}

#[derive(Deserialize)]
struct RawVariable {
    default: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    #[allow(dead_code)] // secrecy only affects logging in Spin; nothing to do here
    secret: bool,
}

#[derive(Deserialize)]
struct RawTriggers {
    http: Vec<RawHttpTrigger>,
}

#[derive(Deserialize)]
struct RawHttpTrigger {
    route: String,
    component: String,
}

#[derive(Deserialize)]
struct RawComponent {
    source: String,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    sqlite_databases: Vec<String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
}

/// What the host needs from the manifest, with variables resolved.
pub struct App {
    pub component_id: String,
    pub source: PathBuf,
    pub allowed_outbound_hosts: Vec<AllowedHost>,
    pub key_value_stores: Vec<String>,
    pub sqlite_databases: Vec<String>,
    /// Component variables (the only ones a component may read), templates expanded.
    pub component_variables: HashMap<String, String>,
}

impl App {
    pub fn load(path: &Path, overrides: &HashMap<String, String>, extra_outbound: &[String]) -> Result<App> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let raw: RawManifest = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if raw.spin_manifest_version != 2 {
            bail!("spin_manifest_version {} is not supported (only 2)", raw.spin_manifest_version);
        }
        let [trigger] = raw.trigger.http.as_slice() else {
            bail!("this host serves exactly one [[trigger.http]]");
        };
        if trigger.route != "/..." {
            bail!("route {:?}: this host only serves the wildcard route \"/...\"", trigger.route);
        }
        let component = raw
            .component
            .get(&trigger.component)
            .ok_or_else(|| anyhow!("trigger names unknown component {:?}", trigger.component))?;

        let mut app_values = HashMap::new();
        for (name, var) in &raw.variables {
            check_variable_name(name)?;
            let from_env = std::env::var(format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase())).ok();
            let value = overrides.get(name).cloned().or(from_env).or_else(|| var.default.clone());
            match value {
                Some(v) => {
                    app_values.insert(name.clone(), v);
                }
                None if var.required => bail!(
                    "required variable {name:?} has no value (--variable or SPIN_VARIABLE_{})",
                    name.to_ascii_uppercase()
                ),
                None => bail!("variable {name:?} needs a default or required = true"),
            }
        }
        for name in overrides.keys() {
            if !raw.variables.contains_key(name) {
                bail!("--variable {name}: not declared in [variables]");
            }
        }

        let mut component_variables = HashMap::new();
        for (name, template) in &component.variables {
            check_variable_name(name)?;
            component_variables.insert(name.clone(), expand(template, &app_values)?);
        }
        let mut allowed_outbound_hosts = Vec::new();
        for entry in component.allowed_outbound_hosts.iter().chain(extra_outbound) {
            allowed_outbound_hosts.push(AllowedHost::parse(&expand(entry, &app_values)?)?);
        }
        let base = path.parent().unwrap_or(Path::new("."));
        Ok(App {
            component_id: trigger.component.clone(),
            source: base.join(&component.source),
            allowed_outbound_hosts,
            key_value_stores: component.key_value_stores.clone(),
            sqlite_databases: component.sqlite_databases.clone(),
            component_variables,
        })
    }

    /// Whether the component may send a request to `scheme://host:port`.
    pub fn outbound_allowed(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.allowed_outbound_hosts.iter().any(|a| a.matches(scheme, host, port))
    }
}

/// Spin's rule: lower-case ASCII letters, digits and underscores, starting with a letter.
pub fn check_variable_name(name: &str) -> Result<()> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        bail!("invalid variable name {name:?}: lower-case letters, digits and underscores, starting with a letter")
    }
}

/// Expands `{{ name }}` references to application variables.
fn expand(template: &str, values: &HashMap<String, String>) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").ok_or_else(|| anyhow!("unclosed {{{{ in {template:?}"))? + start;
        let name = rest[start + 2..end].trim();
        let value =
            values.get(name).ok_or_else(|| anyhow!("template {template:?} names undeclared variable {name:?}"))?;
        out.push_str(value);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// One `allowed_outbound_hosts` entry: `scheme://host[:port]`, where scheme, host and port may
/// be `*`, and host may be `*.domain`. Without a port, the scheme's default port.
pub struct AllowedHost {
    scheme: String,
    host: String,
    port: Option<u16>, // None: any port
}

impl AllowedHost {
    pub fn parse(entry: &str) -> Result<AllowedHost> {
        let (scheme, rest) = entry
            .split_once("://")
            .ok_or_else(|| anyhow!("allowed_outbound_hosts entry {entry:?} needs a scheme (https://...)"))?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, "*")) => (host, None),
            Some((host, port)) => (host, Some(port.parse().with_context(|| format!("port in {entry:?}"))?)),
            None => match scheme {
                "https" => (rest, Some(443)),
                "http" => (rest, Some(80)),
                "redis" => (rest, Some(6379)),
                _ => (rest, None),
            },
        };
        Ok(AllowedHost { scheme: scheme.to_string(), host: host.to_ascii_lowercase(), port })
    }

    fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        let scheme_ok = self.scheme == "*" || self.scheme == scheme;
        let host_ok = self.host == "*"
            || self.host == host
            || self.host.strip_prefix("*.").is_some_and(|domain| host.ends_with(&format!(".{domain}")));
        let port_ok = self.port.is_none_or(|p| p == port);
        scheme_ok && host_ok && port_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_hosts() {
        let a = AllowedHost::parse("https://api.openai.com").unwrap();
        assert!(a.matches("https", "api.openai.com", 443));
        assert!(!a.matches("http", "api.openai.com", 80));
        assert!(!a.matches("https", "api.openai.com", 8443));
        let b = AllowedHost::parse("http://127.0.0.1:*").unwrap();
        assert!(b.matches("http", "127.0.0.1", 8080));
        assert!(!b.matches("http", "127.0.0.2", 8080));
        let c = AllowedHost::parse("https://*.example.com").unwrap();
        assert!(c.matches("https", "a.example.com", 443));
        assert!(!c.matches("https", "example.com", 443));
        let d = AllowedHost::parse("redis://127.0.0.1").unwrap();
        assert!(d.matches("redis", "127.0.0.1", 6379));
        assert!(!d.matches("redis", "127.0.0.1", 6380));
    }

    #[test]
    fn templates() {
        let values = HashMap::from([("a".to_string(), "1".to_string())]);
        assert_eq!(expand("x{{ a }}y{{a}}", &values).unwrap(), "x1y1");
        assert!(expand("{{ b }}", &values).is_err());
    }
}
