//! Guardrails: what may go to a model and what may come back.

pub mod engine;
pub mod eval;
pub mod injection;
pub mod pii;
pub mod stream;

pub use pii::{Finding, PiiKind, PiiScanner};
pub use injection::{InjectionDetector, InjectionScore, Signal};
pub use engine::{BlockReason, CustomRule, Direction, GuardAction, GuardNeeds, GuardPolicy, GuardReport, Guards, Placeholders};
pub use stream::StreamGuard;
