//! Issue 7 finding 1: one signature rule on every path.
//!
//! Certificates used to be checked with `ed25519_dalek::verify_batch` and single messages with
//! `verify_strict`. The batch equation does not apply the strict checks: a signature whose `R`
//! carries a small-order component verifies in a batch whenever the transcript-derived
//! coefficient of that signature kills the torsion (1 in 2 for an order-2 point), while
//! `verify_strict` rejects it. A validator could put such a signature in a QC it never signed
//! and later be "convicted" by evidence that no third party accepts. The test constructs the
//! signature (with the validator's own secret scalar), grinds the nonce until the batch accepts
//! it, and checks that a certificate carrying it is now rejected, as the single rule demands.

use consensus::crypto::Verifier;
use consensus::validators::test_validators;
use consensus::{Bitmap, QuorumCert, SigKind, Signature, ValidatorIndex, View, VoteData};
use consensus::{Block, encode, types::Digest, types::Epoch, types::Height};
use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::scalar::Scalar;
use sha2::{Digest as _, Sha512};

/// A signature by `seed`'s key on `msg` whose `R = r·B + T` with `T` of order 2: it satisfies
/// `8·(s·B − R − k·A) = 0` but not the cofactorless equation.
fn torsioned_signature(seed: [u8; 32], msg: &[u8], nonce: u64) -> [u8; 64] {
    let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
    let a = sk.to_scalar();
    let pk = sk.verifying_key().to_bytes();
    let r = Scalar::from(nonce.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1) * Scalar::from(977u64);
    let big_r = r * ED25519_BASEPOINT_POINT + EIGHT_TORSION[4];
    let r_bytes = big_r.compress().to_bytes();
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(pk);
    h.update(msg);
    let wide: [u8; 64] = h.finalize().into();
    let k = Scalar::from_bytes_mod_order_wide(&wide);
    let s = r + k * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&r_bytes);
    sig[32..].copy_from_slice(s.as_bytes());
    sig
}

#[test]
fn a_signature_only_the_batch_equation_accepts_is_rejected_in_a_certificate() {
    let (vs, ks) = test_validators("sig-rule", Epoch(0), 4).unwrap();
    let gid = Block::genesis(vs.domain()).id(vs.domain());
    let data = VoteData {
        view: View(3),
        block_id: Digest([3; 32]),
        height: Height(2),
        parent_id: Digest([2; 32]),
        parent_view: View(2),
    };
    let body = encode(&data);
    let digest = vs.domain().digest(SigKind::Vote, &body);
    let mut signers = Bitmap::new(4);
    for i in [0u16, 1, 2] {
        signers.set(ValidatorIndex(i));
    }
    let honest: Vec<Signature> = [0usize, 1]
        .iter()
        .map(|&i| ks[i].sign(vs.domain(), SigKind::Vote, &body))
        .collect();
    let dalek_keys: Vec<ed25519_dalek::VerifyingKey> = (0..3)
        .map(|i| ed25519_dalek::SigningKey::from_bytes(&ks[i].seed()).verifying_key())
        .collect();
    // Grind the nonce until the batch (transcript coefficients) accepts the crafted signature.
    let (crafted, tries) = (0..256u64)
        .find_map(|nonce| {
            let bad = torsioned_signature(ks[2].seed(), &digest.0, nonce);
            let sigs: Vec<ed25519_dalek::Signature> = honest
                .iter()
                .map(|s| ed25519_dalek::Signature::from_bytes(&s.0))
                .chain(std::iter::once(ed25519_dalek::Signature::from_bytes(&bad)))
                .collect();
            let msgs = [&digest.0[..], &digest.0[..], &digest.0[..]];
            ed25519_dalek::verify_batch(&msgs, &sigs, &dalek_keys)
                .is_ok()
                .then_some((bad, nonce))
        })
        .expect("the batch equation accepts a torsioned R for some nonce");
    let verifier = Verifier::new(&vs.public_key(ValidatorIndex(2)).unwrap().clone()).unwrap();
    assert!(
        !verifier.verify(&digest, &Signature(crafted)),
        "strict single verification must reject it"
    );
    let mut sigs = honest.clone();
    sigs.push(Signature(crafted));
    let qc = QuorumCert {
        data,
        signers,
        sigs,
    };
    assert!(
        qc.verify(&vs, &gid).is_err(),
        "a QC carrying a signature the single rule rejects was accepted (found after {tries} tries)"
    );
}
