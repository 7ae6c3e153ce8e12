//! Who is calling: identities established from credentials the request presents.
//!
//! [`jwt`] verifies JWT bearer tokens (HS256, RS256, ES256, EdDSA) against configured keys or a
//! JWKS and maps their claims to a consumer, tenant and tier. Like the rest of this crate it is
//! pure: keys arrive parsed, the time arrives as a parameter, and fetching or caching a JWKS is
//! the pipeline's job. [`virtual_keys`] describes keys issued at runtime by the admin API.

pub mod jwt;
pub mod virtual_keys;

pub use jwt::{
    verify as verify_jwt, JwksSource, JwtAlgorithm, JwtError, JwtIdentity, JwtKey, JwtKeyError, JwtKeySet, JwtRules,
    ParsedJwks, SkippedJwk,
};
