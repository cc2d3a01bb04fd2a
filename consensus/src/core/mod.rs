//! The sans-IO HotStuff-2 replica.
mod api;
pub use api::*;

/// placeholder
pub struct Core;
