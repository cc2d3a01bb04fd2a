//! Canonical encoding.
//!
//! **Choice: borsh 1.x** (PROTOCOL.md §9 "Encoding"): fixed-width little-endian integers, u32
//! length prefixes, strict bool/option/enum tags, no maps — exactly the layout of PROTOCOL.md §2 —
//! and `from_slice` rejects trailing bytes. Borsh has one byte string per value, so
//! `encode(decode(b)) == b` for every accepted `b` (tested by property tests). What borsh does
//! not bound is the *size* of a message, so every decode here goes through [`decode`] with a hard
//! byte limit, and the semantic limits (signers bitmap length, vector lengths against `n`) are
//! checked by verification before any signature work.

use borsh::{BorshDeserialize, BorshSerialize};
use thiserror::Error;

/// Hard cap on one consensus message on the wire, in bytes (4 MiB).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Decoding failure. Always a peer's fault, never fatal.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The input is longer than the limit for its kind.
    #[error("message of {len} bytes exceeds limit of {limit} bytes")]
    TooLarge {
        /// Input length in bytes.
        len: usize,
        /// Limit in bytes.
        limit: usize,
    },
    /// Not a canonical encoding of the expected type (bad tag, short input, trailing bytes…).
    #[error("malformed encoding: {0}")]
    Malformed(String),
}

/// Canonical encoding of `value`.
pub fn encode<T: BorshSerialize>(value: &T) -> Vec<u8> {
    // Writing into a Vec cannot fail.
    borsh::to_vec(value).unwrap_or_default()
}

/// Decode exactly one `T` from `bytes`, rejecting inputs longer than `limit` bytes and trailing
/// bytes. Errors: [`DecodeError`].
pub fn decode<T: BorshDeserialize>(bytes: &[u8], limit: usize) -> Result<T, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            limit,
        });
    }
    borsh::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))
}
