//! Conditional routing: a request that matches a condition uses a different subset of the
//! route's targets (e.g. premium tier -> the larger model) or a different route altogether.
//!
//! The first condition whose predicates ALL match wins; later ones are not consulted, so the
//! configuration reads top to bottom like a firewall rule list.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{RequestFacts, RouteError, RouteSpec};

/// How many route-to-route redirects one request may follow.
const MAX_REDIRECTS: usize = 4;

/// One test on the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Predicate {
    /// The consumer's tier equals this value.
    Tier(String),
    /// A consumer metadata key has this value.
    Metadata { key: String, equals: String },
    /// A request header (name case-insensitive) has this value.
    Header { name: String, equals: String },
    /// `max_tokens > N` (a request without max_tokens does not match).
    MaxTokensAbove(u64),
    /// Estimated input tokens > N.
    InputTokensAbove(u64),
    /// `stream == value`.
    Stream(bool),
}

impl Predicate {
    pub fn matches(&self, facts: &RequestFacts) -> bool {
        match self {
            Predicate::Tier(t) => facts.tier.as_deref() == Some(t.as_str()),
            Predicate::Metadata { key, equals } => facts.metadata.get(key) == Some(equals),
            Predicate::Header { name, equals } => {
                let name = name.to_ascii_lowercase();
                facts.headers.iter().any(|(k, v)| k.eq_ignore_ascii_case(&name) && v == equals)
            }
            Predicate::MaxTokensAbove(n) => facts.request.max_tokens.is_some_and(|m| m > *n),
            Predicate::InputTokensAbove(n) => facts.request.input_tokens > *n,
            Predicate::Stream(s) => facts.request.stream == *s,
        }
    }
}

/// What a matching condition does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ConditionAction {
    /// Use only these target ids of the same route.
    Targets(Vec<String>),
    /// Use another route (followed by [`resolve_route`]).
    Route(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// All must match; an empty list always matches.
    pub when: Vec<Predicate>,
    pub then: ConditionAction,
}

impl Condition {
    pub fn matches(&self, facts: &RequestFacts) -> bool {
        self.when.iter().all(|p| p.matches(facts))
    }
}

/// The first matching condition of a route, with its index.
pub(crate) fn first_match<'a>(spec: &'a RouteSpec, facts: &RequestFacts) -> Option<(usize, &'a Condition)> {
    spec.conditions.iter().enumerate().find(|(_, c)| c.matches(facts))
}

/// Follow `Route` conditions from `spec` to the route that should be planned. Residency is
/// still enforced by [`super::plan`] on whatever route this returns.
pub fn resolve_route<'a>(spec: &'a RouteSpec, facts: &RequestFacts, routes: &'a BTreeMap<String, RouteSpec>) -> Result<&'a RouteSpec, RouteError> {
    let mut current = spec;
    let mut seen = vec![spec.name.as_str()];
    for _ in 0..=MAX_REDIRECTS {
        match first_match(current, facts) {
            Some((_, Condition { then: ConditionAction::Route(next), .. })) => {
                if seen.contains(&next.as_str()) {
                    return Err(RouteError::RouteLoop { route: next.clone() });
                }
                current = routes.get(next).ok_or_else(|| RouteError::UnknownRoute { route: next.clone() })?;
                seen.push(current.name.as_str());
            }
            _ => return Ok(current),
        }
    }
    Err(RouteError::RouteLoop { route: current.name.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::test_support::{spec_with, target};

    fn facts() -> RequestFacts {
        RequestFacts::default()
    }

    #[test]
    fn predicates_match_each_field() {
        let mut f = facts();
        f.tier = Some("premium".into());
        f.metadata.insert("team".into(), "legal".into());
        f.headers.insert("x-priority".into(), "high".into());
        f.request.max_tokens = Some(4000);
        f.request.input_tokens = 10;
        f.request.stream = true;
        assert!(Predicate::Tier("premium".into()).matches(&f));
        assert!(!Predicate::Tier("free".into()).matches(&f));
        assert!(Predicate::Metadata { key: "team".into(), equals: "legal".into() }.matches(&f));
        assert!(!Predicate::Metadata { key: "team".into(), equals: "ops".into() }.matches(&f));
        assert!(Predicate::Header { name: "X-Priority".into(), equals: "high".into() }.matches(&f));
        assert!(Predicate::MaxTokensAbove(1000).matches(&f));
        assert!(!Predicate::MaxTokensAbove(4000).matches(&f));
        assert!(!Predicate::InputTokensAbove(10).matches(&f));
        assert!(Predicate::Stream(true).matches(&f));
        f.request.max_tokens = None;
        assert!(!Predicate::MaxTokensAbove(0).matches(&f));
    }

    #[test]
    fn all_predicates_must_match() {
        let c = Condition { when: vec![Predicate::Tier("premium".into()), Predicate::Stream(true)], then: ConditionAction::Targets(vec![]) };
        let mut f = facts();
        f.tier = Some("premium".into());
        assert!(!c.matches(&f));
        f.request.stream = true;
        assert!(c.matches(&f));
    }

    #[test]
    fn resolve_follows_redirects_and_detects_loops() {
        let mut a = spec_with(vec![target("a", "eu-west-1", "eu")]);
        a.name = "a".into();
        a.conditions = vec![Condition { when: vec![Predicate::Tier("premium".into())], then: ConditionAction::Route("b".into()) }];
        let mut b = a.clone();
        b.name = "b".into();
        b.conditions = vec![];
        let mut routes = BTreeMap::new();
        routes.insert("b".to_string(), b.clone());
        let mut f = facts();
        assert_eq!(resolve_route(&a, &f, &routes).map(|r| r.name.as_str()), Ok("a"));
        f.tier = Some("premium".into());
        assert_eq!(resolve_route(&a, &f, &routes).map(|r| r.name.as_str()), Ok("b"));

        // b -> a -> b loops.
        b.conditions = vec![Condition { when: vec![], then: ConditionAction::Route("a".into()) }];
        routes.insert("b".into(), b);
        routes.insert("a".into(), a.clone());
        assert!(matches!(resolve_route(&a, &f, &routes), Err(RouteError::RouteLoop { .. })));

        routes.clear();
        assert_eq!(resolve_route(&a, &f, &routes), Err(RouteError::UnknownRoute { route: "b".into() }));
    }

    #[test]
    fn condition_parses_from_json() {
        let c: Condition =
            serde_json::from_str(r#"{"when":[{"max_tokens_above":2000},{"header":{"name":"x-a","equals":"1"}}],"then":{"route":"big"}}"#).expect("parse");
        assert_eq!(c.then, ConditionAction::Route("big".into()));
        assert!(serde_json::from_str::<Condition>(r#"{"when":[{"nope":1}],"then":{"route":"x"}}"#).is_err());
    }
}
