//! Quorum certificates (QC) and timeout certificates (TC) and their verification
//! (PROTOCOL.md §2 table, §7 case 16).

use crate::codec::encode;
use crate::crypto::{SigKind, Signature, verify_all};
use crate::types::{BlockId, Digest, Height, ValidatorIndex, View};
use crate::validators::ValidatorSet;
use borsh::{BorshDeserialize, BorshSerialize};
use thiserror::Error;

/// The body of a vote, and what a QC certifies: block `block_id` of `view` at `height`, whose
/// justify certified `parent_id` in `parent_view`. `parent_view` is what makes the two-chain
/// commit rule (§4.7) and lock-violation evidence (E3) checkable from a QC alone.
#[derive(Clone, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct VoteData {
    /// View of the certified block.
    pub view: View,
    /// Id of the certified block.
    pub block_id: BlockId,
    /// Height of the certified block.
    pub height: Height,
    /// Id of the block's parent (= its justify's block).
    pub parent_id: BlockId,
    /// View of the block's justify QC.
    pub parent_view: View,
}

impl VoteData {
    /// BLAKE3 of the canonical encoding: the key votes are aggregated under (§4.6).
    pub fn digest(&self) -> Digest {
        Digest(*blake3::hash(&encode(self)).as_bytes())
    }
}

/// A set of validator indices as a bitmap of ⌈n/8⌉ bytes, bit `i % 8` of byte `i / 8`; padding
/// bits must be zero.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default, BorshSerialize, BorshDeserialize)]
pub struct Bitmap(pub Vec<u8>);

impl Bitmap {
    /// An empty bitmap sized for `n` validators.
    pub fn new(n: usize) -> Self {
        Bitmap(vec![0u8; n.div_ceil(8)])
    }
    /// Set bit `i` (ignored if out of range).
    pub fn set(&mut self, i: ValidatorIndex) {
        let i = i.as_usize();
        if let Some(b) = self.0.get_mut(i / 8) {
            *b |= 1 << (i % 8);
        }
    }
    /// Whether bit `i` is set.
    pub fn contains(&self, i: ValidatorIndex) -> bool {
        let i = i.as_usize();
        self.0.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
    }
    /// Set indices in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = ValidatorIndex> + '_ {
        self.0.iter().enumerate().flat_map(|(byte, b)| {
            (0..8).filter_map(move |bit| {
                (b & (1 << bit) != 0).then_some(ValidatorIndex((byte * 8 + bit) as u16))
            })
        })
    }
    /// Number of set bits.
    pub fn count(&self) -> usize {
        self.0.iter().map(|b| b.count_ones() as usize).sum()
    }
    /// Well-formed for `n` validators: exactly ⌈n/8⌉ bytes and zero padding bits.
    pub fn is_well_formed(&self, n: usize) -> bool {
        if self.0.len() != n.div_ceil(8) {
            return false;
        }
        let rem = n % 8;
        rem == 0 || self.0.last().is_none_or(|b| b >> rem == 0)
    }
}

/// Why a certificate is invalid. A peer's fault, never fatal.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CertError {
    /// Bitmap of the wrong length or with padding bits set.
    #[error("malformed signer bitmap")]
    BadBitmap,
    /// Number of signatures (or hqc views) differs from the number of signers.
    #[error("{sigs} signatures for {signers} signers")]
    SignatureCount {
        /// Signatures carried.
        sigs: usize,
        /// Signers in the bitmap.
        signers: usize,
    },
    /// Signers' power is below the quorum.
    #[error("signers have power {power}, quorum is {quorum}")]
    NoQuorum {
        /// Power of the signers.
        power: u64,
        /// Required power.
        quorum: u64,
    },
    /// At least one signature does not verify.
    #[error("invalid signature")]
    BadSignature,
    /// A view-0 certificate that is not the genesis QC.
    #[error("stray genesis certificate")]
    StrayGenesis,
    /// TC rules: hqc views must be below the TC view and high_qc.view = max(hqc_views).
    #[error("inconsistent timeout certificate: {0}")]
    InconsistentTc(&'static str),
    /// VoteData is internally inconsistent (parent view not below view).
    #[error("inconsistent vote data")]
    BadVoteData,
}

/// A quorum certificate: ≥ q matching votes on `data`. Signatures are kept individually (not
/// aggregated) so that any of them can be extracted as evidence (§6.2).
#[derive(Clone, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct QuorumCert {
    /// What is certified.
    pub data: VoteData,
    /// Who signed.
    pub signers: Bitmap,
    /// One signature per set bit, in index order.
    pub sigs: Vec<Signature>,
}

impl QuorumCert {
    /// The genesis QC: certifies the genesis block in view 0, no signatures.
    pub fn genesis(genesis_id: BlockId) -> Self {
        QuorumCert {
            data: VoteData {
                view: View(0),
                block_id: genesis_id,
                height: Height(0),
                parent_id: Digest::ZERO,
                parent_view: View(0),
            },
            signers: Bitmap::default(),
            sigs: Vec::new(),
        }
    }
    /// View of the certified block.
    pub fn view(&self) -> View {
        self.data.view
    }
    /// Id of the certified block.
    pub fn block_id(&self) -> BlockId {
        self.data.block_id
    }
    /// Whether this QC commits its block's parent: consecutive views (§4.7).
    pub fn is_commit_proof(&self) -> bool {
        self.data.view.0 > 0 && self.data.parent_view.next() == Some(self.data.view)
    }
    /// The votes inside, as `(voter, signature)`.
    pub fn votes(&self) -> impl Iterator<Item = (ValidatorIndex, Signature)> + '_ {
        self.signers.iter().zip(self.sigs.iter().copied())
    }

    /// Verify against `vs` (§2, §7 case 16): view 0 only as the genesis QC of `genesis_id`;
    /// otherwise a well-formed bitmap, one signature per signer, signer power ≥ quorum and every
    /// signature valid on `D(VOTE, data)`. Errors: [`CertError`].
    pub fn verify(&self, vs: &ValidatorSet, genesis_id: &BlockId) -> Result<(), CertError> {
        self.verify_except(vs, genesis_id, |_, _| false)
    }

    /// [`Self::verify`], but a signature for which `verified(signer, signature)` holds is taken
    /// as valid without a check: the caller vouches that it already checked these exact bytes
    /// from this signer on this QC's vote data under the same strict rule (a vote it accepted).
    /// Every other check is made as in [`Self::verify`]. Errors: [`CertError`].
    pub fn verify_except(
        &self,
        vs: &ValidatorSet,
        genesis_id: &BlockId,
        verified: impl Fn(ValidatorIndex, &Signature) -> bool,
    ) -> Result<(), CertError> {
        if self.data.view == View(0) {
            return if *self == QuorumCert::genesis(*genesis_id) {
                Ok(())
            } else {
                Err(CertError::StrayGenesis)
            };
        }
        if self.data.parent_view >= self.data.view || self.data.height == Height(0) {
            return Err(CertError::BadVoteData);
        }
        let body = encode(&self.data);
        let digest = vs.domain().digest(SigKind::Vote, &body);
        verify_signers(vs, &self.signers, &self.sigs, |_| digest, verified)
    }
}

/// Shared certificate check: bitmap shape, count, quorum power, then strict verification of each
/// signer's signature on `digest_of(position)` (the single-message rule), but for those the
/// caller already checked under that rule (`verified(signer, signature)`).
fn verify_signers(
    vs: &ValidatorSet,
    signers: &Bitmap,
    sigs: &[Signature],
    digest_of: impl Fn(usize) -> Digest,
    verified: impl Fn(ValidatorIndex, &Signature) -> bool,
) -> Result<(), CertError> {
    if !signers.is_well_formed(vs.len()) {
        return Err(CertError::BadBitmap);
    }
    let count = signers.count();
    if sigs.len() != count {
        return Err(CertError::SignatureCount {
            sigs: sigs.len(),
            signers: count,
        });
    }
    let power: u64 = signers.iter().map(|i| vs.power(i)).sum();
    if power < vs.quorum() {
        return Err(CertError::NoQuorum {
            power,
            quorum: vs.quorum(),
        });
    }
    let mut items = Vec::with_capacity(count);
    for (pos, (i, sig)) in signers.iter().zip(sigs.iter()).enumerate() {
        let v = vs.verifier(i).ok_or(CertError::BadBitmap)?;
        if !verified(i, sig) {
            items.push((v, digest_of(pos), *sig));
        }
    }
    if verify_all(&items) {
        Ok(())
    } else {
        Err(CertError::BadSignature)
    }
}

/// Signed body of a timeout: `view ‖ hqc_view` (§2).
pub fn timeout_body(view: View, hqc_view: View) -> Vec<u8> {
    encode(&(view, hqc_view))
}

/// A timeout certificate for `view`: ≥ q timeouts, each signing `(view, hqc_view_i)`, carrying
/// the highest QC among them (PROTOCOL.md §2, Aptos-style).
#[derive(Clone, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct TimeoutCert {
    /// The view that timed out.
    pub view: View,
    /// The highest QC reported; `high_qc.view == max(hqc_views)`.
    pub high_qc: QuorumCert,
    /// Who signed.
    pub signers: Bitmap,
    /// Each signer's reported lock view, in index order.
    pub hqc_views: Vec<View>,
    /// Each signer's signature on `D(TIMEOUT, view ‖ hqc_view_i)`, in index order.
    pub sigs: Vec<Signature>,
}

impl TimeoutCert {
    /// Verify (§2, §7 case 9): every hqc view `< view`, `high_qc.view == max(hqc_views)`,
    /// quorum power and all signatures valid, and the high QC valid. Errors: [`CertError`].
    pub fn verify(&self, vs: &ValidatorSet, genesis_id: &BlockId) -> Result<(), CertError> {
        self.verify_structure_and_signatures(vs)?;
        self.high_qc.verify(vs, genesis_id)
    }

    /// Everything [`Self::verify`] checks except the high QC's own signatures, cheapest first:
    /// the shape (`hqc_views` and `sigs` agree, every hqc view `< view`, `high_qc.view ==
    /// max(hqc_views)`), then quorum power and each signature. The caller must verify
    /// `high_qc` separately (the core does, through its certificate cache). Errors: [`CertError`].
    pub fn verify_structure_and_signatures(&self, vs: &ValidatorSet) -> Result<(), CertError> {
        if self.hqc_views.len() != self.sigs.len() {
            return Err(CertError::SignatureCount {
                sigs: self.sigs.len(),
                signers: self.hqc_views.len(),
            });
        }
        let max = self.hqc_views.iter().copied().max().unwrap_or(View(0));
        if self.hqc_views.iter().any(|v| *v >= self.view) {
            return Err(CertError::InconsistentTc("hqc view not below TC view"));
        }
        if self.high_qc.view() != max {
            return Err(CertError::InconsistentTc(
                "high_qc view is not the max hqc view",
            ));
        }
        let view = self.view;
        verify_signers(
            vs,
            &self.signers,
            &self.sigs,
            |pos| {
                vs.domain()
                    .digest(SigKind::Timeout, &timeout_body(view, self.hqc_views[pos]))
            },
            |_, _| false,
        )
    }
}
