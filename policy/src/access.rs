//! Which models a consumer may use.

/// An allow-list of model names. An entry is an exact name, `*` for every model, or a prefix
/// ending in `*` (`gpt-4o*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelAccess {
    patterns: Vec<String>,
}

impl ModelAccess {
    pub fn new(patterns: Vec<String>) -> Self {
        Self { patterns }
    }

    /// Every model is allowed.
    pub fn all() -> Self {
        Self { patterns: vec!["*".to_string()] }
    }

    pub fn allows(&self, model: &str) -> bool {
        self.patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => model.starts_with(prefix),
            None => p == model,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_prefix_and_wildcard() {
        let access = ModelAccess::new(vec!["mock".into(), "gpt-4o*".into()]);
        assert!(access.allows("mock"));
        assert!(access.allows("gpt-4o-mini"));
        assert!(!access.allows("gpt-4"));
        assert!(!access.allows("mock-2"));
        assert!(ModelAccess::all().allows("anything"));
        assert!(!ModelAccess::new(vec![]).allows("mock"));
    }
}
