//! The `cors` section: the browser origins allowed to call the gateway. There is nothing to
//! check beyond its shape.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCors {
    allow_origins: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    pub allow_origins: Vec<String>,
}

pub(super) fn validate_cors(raw: RawCors) -> Cors {
    Cors { allow_origins: raw.allow_origins }
}
