//! Newtypes of the protocol vocabulary: [`View`], [`Height`], [`Epoch`], [`ValidatorIndex`],
//! [`BlockId`] and [`Digest`]. All are plain integers or byte arrays with a canonical borsh
//! encoding (fixed-width little-endian, PROTOCOL.md §2).

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! int_newtype {
    ($(#[$m:meta])* $name:ident($inner:ty)) => {
        $(#[$m])*
        #[derive(
            Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default,
            BorshSerialize, BorshDeserialize, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

int_newtype!(
    /// A consensus view (a.k.a. round): the unit of leadership. Views strictly increase along a
    /// chain of blocks; `current_view` of an honest replica never decreases (invariant S7).
    View(u64)
);
int_newtype!(
    /// Height of a block in the chain: genesis is 0, each block is its parent's height + 1.
    Height(u64)
);
int_newtype!(
    /// Epoch of a validator set. One epoch per chain in v1 (no reconfiguration).
    Epoch(u64)
);
int_newtype!(
    /// Index of a validator in the [`crate::ValidatorSet`] (validators ordered by public key).
    ValidatorIndex(u16)
);

impl View {
    /// The next view, or `None` on overflow (PROTOCOL.md §7 case 4: never trust `view + 1`).
    pub fn next(self) -> Option<View> {
        self.0.checked_add(1).map(View)
    }
    /// The previous view (saturating at 0).
    pub fn prev(self) -> View {
        View(self.0.saturating_sub(1))
    }
}

impl Height {
    /// The next height, or `None` on overflow.
    pub fn next(self) -> Option<Height> {
        self.0.checked_add(1).map(Height)
    }
}

impl ValidatorIndex {
    /// The index as a `usize`, for indexing vectors.
    pub fn as_usize(self) -> usize {
        self.0 as usize
    }
}

/// A 32-byte BLAKE3 digest.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, BorshSerialize, BorshDeserialize,
)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The all-zero digest (the parent of genesis).
    pub const ZERO: Digest = Digest([0u8; 32]);
    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// Parse 64 hex characters.
    pub fn from_hex(s: &str) -> Option<Digest> {
        let v = hex::decode(s).ok()?;
        let a: [u8; 32] = v.try_into().ok()?;
        Some(Digest(a))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &self.to_hex()[..12])
    }
}
impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_hex())
    }
}
impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}
impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        Digest::from_hex(&s).ok_or_else(|| serde::de::Error::custom("expected 64 hex chars"))
    }
}

/// Identifier of a block: `BLAKE3("HS2/v1/block" ‖ …)` over the fields listed in
/// [`crate::Block::id`]. Binds the view but not the justify's signatures (PROTOCOL.md §2).
pub type BlockId = Digest;
