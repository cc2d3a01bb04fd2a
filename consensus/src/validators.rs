//! The validator set of one `(chain_id, epoch)` and its quorum arithmetic (PROTOCOL.md §1).

use crate::crypto::{Domain, PublicKey, SigKind, Signature, Verifier};
use crate::types::{Epoch, ValidatorIndex};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Voting power of one validator (an integer weight; equal weights give the classic n/f/q).
pub type VotingPower = u64;

/// One validator as listed in genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorInfo {
    /// ed25519 public key.
    pub public_key: PublicKey,
    /// Voting power, ≥ 1.
    pub power: VotingPower,
}

/// Why a validator set cannot be built.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ValidatorSetError {
    /// No validators.
    #[error("validator set is empty")]
    Empty,
    /// More than `u16::MAX` validators.
    #[error("too many validators: {0}")]
    TooMany(usize),
    /// A public key appears twice.
    #[error("duplicate validator public key {0:?}")]
    Duplicate(PublicKey),
    /// A public key is not a valid, non-weak ed25519 point.
    #[error("invalid or small-order public key {0:?}")]
    BadKey(PublicKey),
    /// A validator has zero voting power or the total overflows.
    #[error("invalid voting power")]
    BadPower,
}

/// The validators of one `(chain_id, epoch)`, ordered by public key, with the signing domain.
///
/// Quorum (PROTOCOL.md §1, generalised to weights): with total power `N` and
/// `F = ⌊(N−1)/3⌋`, a quorum is power `≥ N − F` and the weak threshold (at least one honest) is
/// power `≥ F + 1`. With unit weights these are `q = n − f` and `f + 1`.
#[derive(Clone, Debug)]
pub struct ValidatorSet {
    validators: Vec<ValidatorInfo>,
    verifiers: Vec<Verifier>,
    total: VotingPower,
    domain: Domain,
}

impl ValidatorSet {
    /// Build the set for `chain_id`/`epoch`; validators are sorted by public key.
    /// Errors: [`ValidatorSetError`].
    pub fn new(
        chain_id: &str,
        epoch: Epoch,
        mut validators: Vec<ValidatorInfo>,
    ) -> Result<Self, ValidatorSetError> {
        if validators.is_empty() {
            return Err(ValidatorSetError::Empty);
        }
        if validators.len() > u16::MAX as usize {
            return Err(ValidatorSetError::TooMany(validators.len()));
        }
        validators.sort_by_key(|v| v.public_key);
        let mut total: VotingPower = 0;
        let mut verifiers = Vec::with_capacity(validators.len());
        for (i, v) in validators.iter().enumerate() {
            if i > 0 && validators[i - 1].public_key == v.public_key {
                return Err(ValidatorSetError::Duplicate(v.public_key));
            }
            if v.power == 0 {
                return Err(ValidatorSetError::BadPower);
            }
            total = total
                .checked_add(v.power)
                .ok_or(ValidatorSetError::BadPower)?;
            verifiers
                .push(Verifier::new(&v.public_key).ok_or(ValidatorSetError::BadKey(v.public_key))?);
        }
        Ok(ValidatorSet {
            validators,
            verifiers,
            total,
            domain: Domain::new(chain_id, epoch),
        })
    }

    /// Number of validators `n`.
    pub fn len(&self) -> usize {
        self.validators.len()
    }
    /// Never true for a built set; present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.validators.is_empty()
    }
    /// The validators in index order.
    pub fn validators(&self) -> &[ValidatorInfo] {
        &self.validators
    }
    /// All indices `0..n`.
    pub fn indices(&self) -> impl Iterator<Item = ValidatorIndex> + '_ {
        (0..self.validators.len()).map(|i| ValidatorIndex(i as u16))
    }
    /// Whether `i` is a member.
    pub fn contains(&self, i: ValidatorIndex) -> bool {
        i.as_usize() < self.validators.len()
    }
    /// Index of the validator with public key `pk`.
    pub fn index_of(&self, pk: &PublicKey) -> Option<ValidatorIndex> {
        self.validators
            .binary_search_by(|v| v.public_key.cmp(pk))
            .ok()
            .map(|i| ValidatorIndex(i as u16))
    }
    /// Public key of `i`.
    pub fn public_key(&self, i: ValidatorIndex) -> Option<&PublicKey> {
        self.validators.get(i.as_usize()).map(|v| &v.public_key)
    }
    /// Voting power of `i` (0 for non-members).
    pub fn power(&self, i: ValidatorIndex) -> VotingPower {
        self.validators.get(i.as_usize()).map_or(0, |v| v.power)
    }
    /// Total voting power `N`.
    pub fn total_power(&self) -> VotingPower {
        self.total
    }
    /// Maximum faulty power tolerated: `F = ⌊(N−1)/3⌋`.
    pub fn max_faulty(&self) -> VotingPower {
        (self.total - 1) / 3
    }
    /// Quorum power `N − F` (PROTOCOL.md §1).
    pub fn quorum(&self) -> VotingPower {
        self.total - self.max_faulty()
    }
    /// Weak threshold `F + 1`: any set with this power holds an honest validator.
    pub fn weak_threshold(&self) -> VotingPower {
        self.max_faulty() + 1
    }
    /// Maximum number of validators that may ever be excluded from leadership: `⌊(n−1)/3⌋`.
    pub fn max_excluded(&self) -> usize {
        (self.validators.len() - 1) / 3
    }
    /// The signing domain of this `(chain_id, epoch)`.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }
    /// Verifier for `i`.
    pub fn verifier(&self, i: ValidatorIndex) -> Option<&Verifier> {
        self.verifiers.get(i.as_usize())
    }
    /// Strictly verify that `i` signed `body` as `kind` in this domain.
    pub fn verify(&self, i: ValidatorIndex, kind: SigKind, body: &[u8], sig: &Signature) -> bool {
        match self.verifier(i) {
            Some(v) => v.verify(&self.domain.digest(kind, body), sig),
            None => false,
        }
    }
}

/// Deterministic unit-weight validators for tests, benchmarks and simulations: validator `i`'s
/// key has the seed `[i + 1; 32]`, and `keys[j]` is the key of `ValidatorIndex(j)` (the set
/// sorts by public key). Never use these keys outside tests. Errors: [`ValidatorSetError`]
/// (`Empty` for `n = 0`, `Duplicate` for `n > 255`).
pub fn test_validators(
    chain_id: &str,
    epoch: Epoch,
    n: usize,
) -> Result<(ValidatorSet, Vec<crate::PrivateKey>), ValidatorSetError> {
    let mut keys: Vec<crate::PrivateKey> = (0..n)
        .map(|i| crate::PrivateKey::from_seed([i as u8 + 1; 32]))
        .collect();
    let infos = keys
        .iter()
        .map(|k| ValidatorInfo {
            public_key: k.public(),
            power: 1,
        })
        .collect();
    let vs = ValidatorSet::new(chain_id, epoch, infos)?;
    keys.sort_by_key(|k| vs.index_of(&k.public()).map_or(u16::MAX, |i| i.0));
    Ok((vs, keys))
}
