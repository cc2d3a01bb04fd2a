//! What this binary is: its version and the git commit it was built from (`build.rs`).

/// The crate (workspace) version, e.g. `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The first 12 hex digits of the git commit built, or `unknown`.
pub const GIT_COMMIT: &str = env!("BFTNODE_GIT_COMMIT");

/// `<version> (<commit>)`, what `bftnode --version` prints after the name.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("BFTNODE_GIT_COMMIT"),
    ")"
);
