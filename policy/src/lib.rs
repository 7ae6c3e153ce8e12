//! Policy decisions as plain functions over plain data.
//!
//! Nothing here performs I/O or reads the clock: callers pass in what was presented and the
//! validated configuration, and get a decision back that tests can assert on.

pub mod access;
pub mod auth;
pub mod cache;
pub mod guard;
pub mod identity;
pub mod limits;
pub mod reqlog;
pub mod route;
pub mod stats;

pub use access::ModelAccess;
pub use auth::{AuthDecision, AuthError, ConsumerKey, KeyTable};
