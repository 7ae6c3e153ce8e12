//! Guardrails: what may go to a model and what may come back.

pub mod engine;
pub mod eval;
pub mod hold;
pub mod injection;
pub mod pii;
pub mod stream;

pub use pii::{redact_all, Finding, PiiKind, PiiScanner};
pub use injection::{InjectionDetector, InjectionScore, Signal};
pub use engine::{BlockReason, CustomRule, Direction, GuardAction, GuardNeeds, GuardPolicy, GuardReport, Guards, Placeholders, StreamHold, DEFAULT_STREAM_HOLD_MAX_BYTES};
pub use stream::StreamGuard;
