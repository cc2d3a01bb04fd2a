//! Property tests of the consensus crate's public surface: canonical encoding, panic-free
//! bounded decoding, QC/TC verification thresholds and evidence verification.

use consensus::block::BlockHeader;
use consensus::cert::timeout_body;
use consensus::codec::MAX_MESSAGE_BYTES;
use consensus::messages::proposal_body;
use consensus::{
    Bitmap, Block, BlockId, BlockRequest, BlockResponse, CertError, ConsensusMessage, DecodeError,
    Digest, Epoch, Evidence, EvidenceError, Height, LaterMessage, PrivateKey, Proposal,
    ProposalRecord, QuorumCert, SafetyData, SigKind, Signature, SignedVote, Status, Timeout,
    TimeoutCert, ValidatorIndex, ValidatorInfo, ValidatorSet, View, Vote, VoteData, decode, encode,
};
use proptest::prelude::*;
use proptest::test_runner::Config as PtConfig;

// ---------------------------------------------------------------------------------------------
// Keys and signed objects
// ---------------------------------------------------------------------------------------------

/// `n` unit-weight validators; `ks[i]` is the key of `ValidatorIndex(i)` (the set sorts by key).
fn keys_for(chain: &str, epoch: u64, n: usize) -> (ValidatorSet, Vec<PrivateKey>) {
    consensus::validators::test_validators(chain, Epoch(epoch), n).unwrap()
}

fn keys(n: usize) -> (ValidatorSet, Vec<PrivateKey>) {
    keys_for("test", 0, n)
}

fn genesis_id(vs: &ValidatorSet) -> BlockId {
    Block::genesis(vs.domain()).id(vs.domain())
}

fn vote_data(view: u64, tag: u8) -> VoteData {
    VoteData {
        view: View(view),
        block_id: Digest([tag; 32]),
        height: Height(view),
        parent_id: Digest([tag.wrapping_add(1); 32]),
        parent_view: View(view - 1),
    }
}

fn bitmap_of(n: usize, signers: &[usize]) -> Bitmap {
    let mut b = Bitmap::new(n);
    for &i in signers {
        b.set(ValidatorIndex(i as u16));
    }
    b
}

/// A QC on `data` signed by `signers` (sorted, distinct) with the keys `ks` in `vs`'s domain.
fn qc_signed(
    vs: &ValidatorSet,
    ks: &[PrivateKey],
    data: &VoteData,
    signers: &[usize],
) -> QuorumCert {
    let body = encode(data);
    QuorumCert {
        data: data.clone(),
        signers: bitmap_of(vs.len(), signers),
        sigs: signers
            .iter()
            .map(|&i| ks[i].sign(vs.domain(), SigKind::Vote, &body))
            .collect(),
    }
}

fn quorum(vs: &ValidatorSet) -> usize {
    vs.quorum() as usize
}

/// Indices selected by `mask` (bit i of mask ↔ validator i), sorted.
fn subset(n: usize, mask: u32) -> Vec<usize> {
    (0..n).filter(|i| mask & (1 << i) != 0).collect()
}

/// A TC for `view` signed by `signers`, each reporting `hqc[k]` (k-th signer), with `high_qc`.
fn tc_signed(
    vs: &ValidatorSet,
    ks: &[PrivateKey],
    view: u64,
    high_qc: QuorumCert,
    signers: &[usize],
    hqc: &[u64],
) -> TimeoutCert {
    TimeoutCert {
        view: View(view),
        high_qc,
        signers: bitmap_of(vs.len(), signers),
        hqc_views: hqc.iter().map(|v| View(*v)).collect(),
        sigs: signers
            .iter()
            .zip(hqc)
            .map(|(&i, &h)| {
                ks[i].sign(
                    vs.domain(),
                    SigKind::Timeout,
                    &timeout_body(View(view), View(h)),
                )
            })
            .collect(),
    }
}

fn flip(sig: &Signature) -> Signature {
    let mut s = *sig;
    s.0[7] ^= 0x01;
    s
}

// ---------------------------------------------------------------------------------------------
// Strategies for arbitrary (unsigned, structurally random) wire values
// ---------------------------------------------------------------------------------------------

fn u64_s() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..16, any::<u64>()]
}
fn view_s() -> impl Strategy<Value = View> {
    u64_s().prop_map(View)
}
fn height_s() -> impl Strategy<Value = Height> {
    u64_s().prop_map(Height)
}
fn epoch_s() -> impl Strategy<Value = Epoch> {
    u64_s().prop_map(Epoch)
}
fn idx_s() -> impl Strategy<Value = ValidatorIndex> {
    prop_oneof![0u16..8, any::<u16>()].prop_map(ValidatorIndex)
}
fn digest_s() -> impl Strategy<Value = Digest> {
    prop_oneof![Just(Digest::ZERO), any::<[u8; 32]>().prop_map(Digest)]
}
fn sig_s() -> impl Strategy<Value = Signature> {
    (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(a, b)| {
        let mut s = [0u8; 64];
        s[..32].copy_from_slice(&a);
        s[32..].copy_from_slice(&b);
        Signature(s)
    })
}
fn bitmap_s() -> impl Strategy<Value = Bitmap> {
    prop::collection::vec(any::<u8>(), 0..16).prop_map(Bitmap)
}
fn vote_data_s() -> impl Strategy<Value = VoteData> {
    (view_s(), digest_s(), height_s(), digest_s(), view_s()).prop_map(
        |(view, block_id, height, parent_id, parent_view)| VoteData {
            view,
            block_id,
            height,
            parent_id,
            parent_view,
        },
    )
}
fn qc_s() -> impl Strategy<Value = QuorumCert> {
    (
        vote_data_s(),
        bitmap_s(),
        prop::collection::vec(sig_s(), 0..6),
    )
        .prop_map(|(data, signers, sigs)| QuorumCert {
            data,
            signers,
            sigs,
        })
}
fn tc_s() -> impl Strategy<Value = TimeoutCert> {
    (
        view_s(),
        qc_s(),
        bitmap_s(),
        prop::collection::vec(view_s(), 0..6),
        prop::collection::vec(sig_s(), 0..6),
    )
        .prop_map(|(view, high_qc, signers, hqc_views, sigs)| TimeoutCert {
            view,
            high_qc,
            signers,
            hqc_views,
            sigs,
        })
}
fn signed_vote_s() -> impl Strategy<Value = SignedVote> {
    (vote_data_s(), sig_s()).prop_map(|(data, sig)| SignedVote { data, sig })
}
fn header_s() -> impl Strategy<Value = BlockHeader> {
    (
        (epoch_s(), view_s(), height_s(), digest_s(), digest_s()),
        (
            idx_s(),
            view_s(),
            digest_s(),
            prop::collection::vec(idx_s(), 0..6),
        ),
    )
        .prop_map(
            |(
                (epoch, view, height, parent, payload_digest),
                (proposer, justify_view, justify_block, skipped_leaders),
            )| BlockHeader {
                epoch,
                view,
                height,
                parent,
                payload_digest,
                proposer,
                justify_view,
                justify_block,
                skipped_leaders,
            },
        )
}
fn later_s() -> impl Strategy<Value = LaterMessage> {
    prop_oneof![
        signed_vote_s().prop_map(LaterMessage::Vote),
        (view_s(), view_s(), sig_s()).prop_map(|(view, hqc_view, sig)| LaterMessage::Timeout {
            view,
            hqc_view,
            sig
        }),
    ]
}
fn evidence_s() -> impl Strategy<Value = Evidence> {
    prop_oneof![
        (idx_s(), signed_vote_s(), signed_vote_s())
            .prop_map(|(offender, a, b)| Evidence::DoubleVote { offender, a, b }),
        (idx_s(), view_s(), digest_s(), sig_s(), digest_s(), sig_s()).prop_map(
            |(offender, view, block_a, sig_a, block_b, sig_b)| Evidence::DoubleProposal {
                offender,
                view,
                block_a,
                sig_a,
                block_b,
                sig_b
            }
        ),
        (idx_s(), signed_vote_s(), later_s()).prop_map(|(offender, vote, later)| {
            Evidence::LockViolation {
                offender,
                vote,
                later,
            }
        }),
        (idx_s(), view_s(), view_s(), sig_s(), view_s(), sig_s()).prop_map(
            |(offender, view, hqc_a, sig_a, hqc_b, sig_b)| Evidence::ConflictingTimeouts {
                offender,
                view,
                hqc_a,
                sig_a,
                hqc_b,
                sig_b
            }
        ),
        (idx_s(), header_s(), sig_s(), prop::option::of(header_s())).prop_map(
            |(offender, header, sig, parent)| Evidence::InvalidProposal {
                offender,
                header,
                sig,
                parent
            }
        ),
    ]
}
fn block_s() -> impl Strategy<Value = Block> {
    (
        (epoch_s(), view_s(), height_s(), digest_s(), qc_s()),
        (
            prop::collection::vec(any::<u8>(), 0..256),
            prop::collection::vec(evidence_s(), 0..3),
            idx_s(),
            prop::collection::vec(idx_s(), 0..6),
        ),
    )
        .prop_map(
            |((epoch, view, height, parent, justify), (payload, evidence, proposer, skipped))| {
                Block {
                    epoch,
                    view,
                    height,
                    parent,
                    justify,
                    payload,
                    evidence,
                    proposer,
                    skipped_leaders: skipped,
                }
            },
        )
}
fn vote_s() -> impl Strategy<Value = Vote> {
    (vote_data_s(), idx_s(), sig_s()).prop_map(|(data, voter, sig)| Vote { data, voter, sig })
}
fn timeout_s() -> impl Strategy<Value = Timeout> {
    (
        view_s(),
        qc_s(),
        idx_s(),
        sig_s(),
        prop::option::of(tc_s()),
        prop::option::of(qc_s()),
    )
        .prop_map(|(view, high_qc, sender, sig, high_tc, commit_qc)| Timeout {
            view,
            high_qc,
            sender,
            sig,
            high_tc,
            commit_qc,
        })
}
fn status_s() -> impl Strategy<Value = Status> {
    (view_s(), qc_s(), idx_s(), sig_s(), prop::option::of(tc_s())).prop_map(
        |(view, high_qc, sender, sig, high_tc)| Status {
            view,
            high_qc,
            sender,
            sig,
            high_tc,
        },
    )
}
fn proposal_s() -> impl Strategy<Value = Proposal> {
    (block_s(), prop::option::of(tc_s()), sig_s()).prop_map(|(block, tc, sig)| Proposal {
        block,
        tc,
        sig,
    })
}
fn message_s() -> impl Strategy<Value = ConsensusMessage> {
    prop_oneof![
        proposal_s().prop_map(ConsensusMessage::Proposal),
        vote_s().prop_map(ConsensusMessage::Vote),
        timeout_s().prop_map(ConsensusMessage::Timeout),
        status_s().prop_map(ConsensusMessage::Status),
        tc_s().prop_map(ConsensusMessage::TimeoutCert),
    ]
}
fn safety_s() -> impl Strategy<Value = SafetyData> {
    (
        (view_s(), view_s(), view_s(), qc_s()),
        (
            prop::option::of(vote_s()),
            prop::option::of(timeout_s()),
            prop::option::of(
                (proposal_s(), digest_s()).prop_map(|(p, id)| ProposalRecord::of(&p, id)),
            ),
            prop::option::of(tc_s()),
        ),
    )
        .prop_map(
            |((lv, lt, lp, lock), (last_vote, last_timeout, last_proposal, high_tc))| SafetyData {
                last_voted_view: lv,
                last_timeout_view: lt,
                last_proposed_view: lp,
                lock,
                last_vote,
                last_timeout,
                last_proposal,
                high_tc,
            },
        )
}
fn request_s() -> impl Strategy<Value = BlockRequest> {
    (digest_s(), height_s(), any::<u32>()).prop_map(|(target, stop_at, max_blocks)| BlockRequest {
        target,
        stop_at,
        max_blocks,
    })
}
fn response_s() -> impl Strategy<Value = BlockResponse> {
    prop::collection::vec(block_s(), 0..3).prop_map(|blocks| BlockResponse { blocks })
}

/// A mutation of an encoding.
#[derive(Clone, Debug)]
enum Mutation {
    /// XOR the byte at (pos mod len) with a non-zero mask.
    Flip(usize, u8),
    /// Overwrite the byte at (pos mod len).
    Set(usize, u8),
    /// Keep only the first (pos mod len) bytes.
    Truncate(usize),
    /// Append bytes.
    Append(Vec<u8>),
    /// Insert a byte at (pos mod (len + 1)).
    Insert(usize, u8),
    /// Remove the byte at (pos mod len).
    Remove(usize),
    /// Overwrite 4 bytes at (pos mod len) with a little-endian u32 (a length prefix, maybe).
    Len32(usize, u32),
}

fn mutation_s() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 1u8..=255).prop_map(|(p, m)| Mutation::Flip(p, m)),
        2 => (any::<usize>(), prop_oneof![Just(0u8), Just(1), Just(2), Just(5), any::<u8>()])
            .prop_map(|(p, b)| Mutation::Set(p, b)),
        2 => any::<usize>().prop_map(Mutation::Truncate),
        1 => prop::collection::vec(any::<u8>(), 1..8).prop_map(Mutation::Append),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Insert(p, b)),
        1 => any::<usize>().prop_map(Mutation::Remove),
        2 => (any::<usize>(), prop_oneof![Just(u32::MAX), Just(u32::MAX - 1), Just(1u32 << 31),
            Just(0x0100_0000), 0u32..64])
            .prop_map(|(p, v)| Mutation::Len32(p, v)),
    ]
}

fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    match m {
        Mutation::Flip(p, x) if len > 0 => bytes[p % len] ^= x,
        Mutation::Set(p, b) if len > 0 => bytes[p % len] = *b,
        Mutation::Truncate(p) if len > 0 => bytes.truncate(p % len),
        Mutation::Append(extra) => bytes.extend_from_slice(extra),
        Mutation::Insert(p, b) => bytes.insert(p % (len + 1), *b),
        Mutation::Remove(p) if len > 0 => {
            bytes.remove(p % len);
        }
        Mutation::Len32(p, v) if len >= 4 => {
            let at = p % (len - 3);
            bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        _ => {}
    }
}

/// If `b` decodes as `T`, re-encoding gives back exactly `b`.
fn assert_canonical<T>(b: &[u8]) -> Result<(), TestCaseError>
where
    T: borsh::BorshDeserialize + borsh::BorshSerialize + std::fmt::Debug,
{
    if let Ok(v) = decode::<T>(b, MAX_MESSAGE_BYTES) {
        prop_assert_eq!(
            encode(&v),
            b.to_vec(),
            "non-canonical accepted encoding: {:?}",
            v
        );
    }
    Ok(())
}

/// Round trip, canonical under mutation, trailing bytes rejected.
fn check_codec<T>(x: &T, muts: &[Mutation], trailing: &[u8]) -> Result<(), TestCaseError>
where
    T: borsh::BorshDeserialize + borsh::BorshSerialize + std::fmt::Debug + PartialEq,
{
    let enc = encode(x);
    let back: T =
        decode(&enc, MAX_MESSAGE_BYTES).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, x);
    let mut b = enc.clone();
    for m in muts {
        mutate(&mut b, m);
        assert_canonical::<T>(&b)?;
    }
    if !trailing.is_empty() {
        let mut t = enc;
        t.extend_from_slice(trailing);
        prop_assert!(
            matches!(
                decode::<T>(&t, MAX_MESSAGE_BYTES),
                Err(DecodeError::Malformed(_))
            ),
            "trailing bytes accepted"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 1. Encoding
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(PtConfig::with_cases(512))]

    #[test]
    fn message_roundtrip_and_canonical(
        m in message_s(),
        muts in prop::collection::vec(mutation_s(), 1..4),
        trailing in prop::collection::vec(any::<u8>(), 1..8),
    ) {
        check_codec(&m, &muts, &trailing)?;
        prop_assert_eq!(ConsensusMessage::decode(&m.encode()).ok(), Some(m.clone()));
    }

    #[test]
    fn block_evidence_roundtrip_and_canonical(
        b in block_s(),
        e in evidence_s(),
        muts in prop::collection::vec(mutation_s(), 1..4),
        trailing in prop::collection::vec(any::<u8>(), 1..8),
    ) {
        check_codec(&b, &muts, &trailing)?;
        check_codec(&e, &muts, &trailing)?;
    }

    #[test]
    fn sync_and_safety_roundtrip_and_canonical(
        req in request_s(),
        resp in response_s(),
        sd in safety_s(),
        muts in prop::collection::vec(mutation_s(), 1..4),
        trailing in prop::collection::vec(any::<u8>(), 1..8),
    ) {
        check_codec(&req, &muts, &trailing)?;
        check_codec(&resp, &muts, &trailing)?;
        check_codec(&sd, &muts, &trailing)?;
    }

    /// Every single-byte change of a small message's encoding either fails to decode or
    /// re-encodes to exactly the changed bytes (exhaustive over position and value).
    #[test]
    fn vote_every_byte_value_canonical(v in vote_s()) {
        let enc = ConsensusMessage::Vote(v).encode();
        let mut accepted = 0usize;
        for pos in 0..enc.len() {
            for val in 0..=255u8 {
                let mut b = enc.clone();
                b[pos] = val;
                assert_canonical::<ConsensusMessage>(&b)?;
                accepted += usize::from(ConsensusMessage::decode(&b).is_ok());
            }
        }
        // Not vacuous: every byte of the fixed-width fields accepts every value.
        prop_assert!(accepted >= 150 * 255, "only {} variants accepted", accepted);
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Decoding arbitrary bytes never panics; size limit
// ---------------------------------------------------------------------------------------------

fn is_too_large(r: &Result<(), DecodeError>) -> bool {
    matches!(r, Err(DecodeError::TooLarge { .. }))
}

fn decode_all(b: &[u8], limit: usize) -> Vec<Result<(), DecodeError>> {
    vec![
        ConsensusMessage::decode(b).map(|_| ()),
        decode::<ConsensusMessage>(b, limit).map(|_| ()),
        decode::<Block>(b, limit).map(|_| ()),
        decode::<BlockRequest>(b, limit).map(|_| ()),
        decode::<BlockResponse>(b, limit).map(|_| ()),
        decode::<Evidence>(b, limit).map(|_| ()),
        decode::<SafetyData>(b, limit).map(|_| ()),
    ]
}

fn huge_prefix_s() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(any::<u8>(), 0..200),
        prop_oneof![
            Just(u32::MAX),
            Just(u32::MAX - 7),
            Just(1u32 << 31),
            Just(1u32 << 24)
        ],
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(mut head, len, tail)| {
            head.extend_from_slice(&len.to_le_bytes());
            head.extend_from_slice(&tail);
            head
        })
}

proptest! {
    #![proptest_config(PtConfig::with_cases(1024))]

    #[test]
    fn decode_arbitrary_bytes_never_panics(b in prop::collection::vec(any::<u8>(), 0..4096)) {
        for r in decode_all(&b, MAX_MESSAGE_BYTES) {
            prop_assert!(!is_too_large(&r));
        }
    }

    #[test]
    fn decode_huge_length_prefixes_never_panics(b in huge_prefix_s()) {
        // Some types may legitimately read these bytes as a plain integer (e.g. a
        // `BlockRequest::max_blocks`); what matters is no panic, no huge allocation, and that
        // whatever is accepted is canonical.
        for r in decode_all(&b, MAX_MESSAGE_BYTES) {
            prop_assert!(!is_too_large(&r));
        }
        assert_canonical::<ConsensusMessage>(&b)?;
        assert_canonical::<Block>(&b)?;
        assert_canonical::<BlockRequest>(&b)?;
        assert_canonical::<BlockResponse>(&b)?;
        assert_canonical::<Evidence>(&b)?;
        assert_canonical::<SafetyData>(&b)?;
    }

    /// Mutated valid encodings with length prefixes overwritten (all positions in the message).
    #[test]
    fn decode_mutated_lengths_never_panics(
        m in message_s(),
        p in any::<usize>(),
        len in prop_oneof![Just(u32::MAX), Just(1u32 << 31), Just(1u32 << 20), 0u32..300],
    ) {
        let mut b = m.encode();
        mutate(&mut b, &Mutation::Len32(p, len));
        let _ = decode_all(&b, MAX_MESSAGE_BYTES);
        assert_canonical::<ConsensusMessage>(&b)?;
    }

    #[test]
    fn over_limit_is_too_large(b in prop::collection::vec(any::<u8>(), 1..512), cut in 0usize..512) {
        let limit = cut % b.len();
        for r in decode_all(&b, limit).into_iter().skip(1) {
            prop_assert_eq!(r, Err(DecodeError::TooLarge { len: b.len(), limit }));
        }
    }
}

#[test]
fn length_prefix_u32_max_every_type() {
    // A bare u32::MAX vector length at the start of every vector-first type, and behind the
    // fixed-size prefix of the others.
    let max = u32::MAX.to_le_bytes();
    let resp = max.to_vec();
    assert!(decode::<BlockResponse>(&resp, MAX_MESSAGE_BYTES).is_err());
    // Block: epoch, view, height (24) + parent (32) + justify.data (88) then the bitmap length.
    let mut blk = vec![0u8; 24 + 32 + 88];
    blk.extend_from_slice(&max);
    assert!(decode::<Block>(&blk, MAX_MESSAGE_BYTES).is_err());
    // Proposal message: tag 0 then the same block.
    let mut msg = vec![0u8];
    msg.extend_from_slice(&blk);
    assert!(ConsensusMessage::decode(&msg).is_err());
    // SafetyData: three views (24) + lock.data (88) then the bitmap length.
    let mut sd = vec![0u8; 24 + 88];
    sd.extend_from_slice(&max);
    assert!(decode::<SafetyData>(&sd, MAX_MESSAGE_BYTES).is_err());
    // Evidence::InvalidProposal: tag 4, offender (2), header prefix up to skipped_leaders
    // (8+8+8+32+32+2+8+32) then the vector length.
    let mut ev = vec![4u8, 0, 0];
    ev.extend_from_slice(&[0u8; 130]);
    ev.extend_from_slice(&max);
    assert!(decode::<Evidence>(&ev, MAX_MESSAGE_BYTES).is_err());
}

#[test]
fn message_over_max_bytes_is_too_large() {
    let b = vec![0u8; MAX_MESSAGE_BYTES + 1];
    assert_eq!(
        ConsensusMessage::decode(&b),
        Err(DecodeError::TooLarge {
            len: MAX_MESSAGE_BYTES + 1,
            limit: MAX_MESSAGE_BYTES
        })
    );
    // A message exactly at the limit is not rejected for its size.
    let mut ok = ConsensusMessage::Vote(Vote {
        data: vote_data(1, 1),
        voter: ValidatorIndex(0),
        sig: Signature([0; 64]),
    })
    .encode();
    let limit = ok.len();
    assert!(decode::<ConsensusMessage>(&ok, limit).is_ok());
    ok.push(0);
    assert!(matches!(
        decode::<ConsensusMessage>(&ok, limit),
        Err(DecodeError::TooLarge { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// 3. QC / TC thresholds
// ---------------------------------------------------------------------------------------------

#[test]
fn qc_threshold_exhaustive_popcount() {
    for n in 1..=20usize {
        let (vs, ks) = keys(n);
        let gid = genesis_id(&vs);
        let q = quorum(&vs);
        assert_eq!(q, n - (n - 1) / 3, "q = n - f");
        let data = vote_data(7, n as u8);
        for k in 0..=n {
            // Take the top-k indices so the set differs from the lowest indices.
            let signers: Vec<usize> = (n - k..n).collect();
            let qc = qc_signed(&vs, &ks, &data, &signers);
            let r = qc.verify(&vs, &gid);
            if k >= q {
                assert_eq!(r, Ok(()), "n={n} k={k} q={q}");
            } else {
                assert_eq!(
                    r,
                    Err(CertError::NoQuorum {
                        power: k as u64,
                        quorum: q as u64
                    }),
                    "n={n} k={k}"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(PtConfig::with_cases(128))]

    #[test]
    fn qc_threshold_random_subsets(n in 1usize..=20, mask in any::<u32>(), view in 1u64..1000) {
        let (vs, ks) = keys(n);
        let gid = genesis_id(&vs);
        let q = quorum(&vs);
        let signers = subset(n, mask);
        let data = vote_data(view, mask as u8);
        let qc = qc_signed(&vs, &ks, &data, &signers);
        let r = qc.verify(&vs, &gid);
        if signers.len() >= q {
            prop_assert_eq!(r, Ok(()));
        } else {
            let is_no_quorum = matches!(r, Err(CertError::NoQuorum { .. }));
            prop_assert!(is_no_quorum);
        }
    }

    #[test]
    fn qc_malformed_is_rejected(n in 1usize..=20, extra in 1usize..4, pad_bit in 0u8..8, which in any::<usize>()) {
        let (vs, ks) = keys(n);
        let gid = genesis_id(&vs);
        let q = quorum(&vs);
        let all: Vec<usize> = (0..n).collect();
        let data = vote_data(3, 9);
        let good = qc_signed(&vs, &ks, &data, &all[..q]);
        prop_assert_eq!(good.verify(&vs, &gid), Ok(()));

        // Signature count mismatch: one missing, one extra.
        let mut short = good.clone();
        short.sigs.pop();
        prop_assert_eq!(short.verify(&vs, &gid), Err(CertError::SignatureCount { sigs: q - 1, signers: q }));
        let mut long = good.clone();
        for _ in 0..extra {
            long.sigs.push(good.sigs[0]);
        }
        prop_assert_eq!(long.verify(&vs, &gid), Err(CertError::SignatureCount { sigs: q + extra, signers: q }));

        // Bitmap of the wrong length (too long, too short).
        let mut longer = good.clone();
        longer.signers.0.extend(std::iter::repeat_n(0, extra));
        prop_assert_eq!(longer.verify(&vs, &gid), Err(CertError::BadBitmap));
        let mut shorter = good.clone();
        shorter.signers.0.pop();
        prop_assert_eq!(shorter.verify(&vs, &gid), Err(CertError::BadBitmap));

        // Padding bit set (only when n is not a multiple of 8).
        if n % 8 != 0 {
            let bit = (n % 8) as u8 + pad_bit % (8 - (n % 8) as u8);
            let mut padded = good.clone();
            *padded.signers.0.last_mut().unwrap() |= 1 << bit;
            padded.sigs.push(good.sigs[0]);
            prop_assert_eq!(padded.verify(&vs, &gid), Err(CertError::BadBitmap));
        }

        // One signature replaced by a non-member's signature on the same body.
        let outsider = PrivateKey::from_seed([0xEE; 32]);
        let mut stranger = good.clone();
        let pos = which % q;
        stranger.sigs[pos] = outsider.sign(vs.domain(), SigKind::Vote, &encode(&data));
        prop_assert_eq!(stranger.verify(&vs, &gid), Err(CertError::BadSignature));

        // One signature flipped.
        let mut flipped = good.clone();
        flipped.sigs[pos] = flip(&flipped.sigs[pos]);
        prop_assert_eq!(flipped.verify(&vs, &gid), Err(CertError::BadSignature));

        // Two signatures swapped (each valid, wrong signer position) — only with ≥ 2 signers.
        if q >= 2 {
            let mut swapped = good.clone();
            swapped.sigs.swap(0, q - 1);
            prop_assert_eq!(swapped.verify(&vs, &gid), Err(CertError::BadSignature));
        }

        // Same signers and signatures, data tampered.
        let mut tampered = good.clone();
        tampered.data.height = Height(tampered.data.height.0 + 1);
        prop_assert_eq!(tampered.verify(&vs, &gid), Err(CertError::BadSignature));
    }

    #[test]
    fn qc_wrong_domain_is_rejected(n in 1usize..=12, bad in 0usize..3) {
        let (vs, _) = keys(n);
        let gid = genesis_id(&vs);
        // Same keys, signed in another (chain id, epoch) domain.
        let (other, oks) = match bad {
            0 => keys_for("other", 0, n),
            1 => keys_for("test", 1, n),
            _ => keys_for("tes", 0, n),
        };
        let data = vote_data(5, 2);
        let all: Vec<usize> = (0..n).collect();
        let qc = qc_signed(&other, &oks, &data, &all);
        prop_assert_eq!(qc.verify(&other, &genesis_id(&other)), Ok(()));
        prop_assert_eq!(qc.verify(&vs, &gid), Err(CertError::BadSignature));
    }

    #[test]
    fn vote_signed_for_another_view_is_rejected(n in 1usize..=12, view in 2u64..100, pos in any::<usize>()) {
        let (vs, ks) = keys(n);
        let gid = genesis_id(&vs);
        let q = quorum(&vs);
        let data = vote_data(view, 1);
        let mut qc = qc_signed(&vs, &ks, &data, &(0..q).collect::<Vec<_>>());
        let wrong = vote_data(view - 1, 1);
        let p = pos % q;
        qc.sigs[p] = ks[p].sign(vs.domain(), SigKind::Vote, &encode(&wrong));
        prop_assert_eq!(qc.verify(&vs, &gid), Err(CertError::BadSignature));
        // A vote signature is not a timeout/status/proposal signature (kind separation).
        let mut kinds = qc_signed(&vs, &ks, &data, &(0..q).collect::<Vec<_>>());
        kinds.sigs[p] = ks[p].sign(vs.domain(), SigKind::Timeout, &encode(&data));
        prop_assert_eq!(kinds.verify(&vs, &gid), Err(CertError::BadSignature));
    }
}

#[test]
fn qc_view_zero_only_genesis() {
    let (vs, ks) = keys(4);
    let gid = genesis_id(&vs);
    assert_eq!(QuorumCert::genesis(gid).verify(&vs, &gid), Ok(()));
    // Genesis of another block id.
    assert_eq!(
        QuorumCert::genesis(Digest([1; 32])).verify(&vs, &gid),
        Err(CertError::StrayGenesis)
    );
    // View 0 with real signatures of a quorum.
    let mut data = QuorumCert::genesis(gid).data;
    data.height = Height(0);
    let signed = qc_signed(&vs, &ks, &data, &[0, 1, 2, 3]);
    assert_eq!(signed.verify(&vs, &gid), Err(CertError::StrayGenesis));
    // Genesis with a bitmap attached, or a changed field.
    let mut g = QuorumCert::genesis(gid);
    g.signers = Bitmap::new(4);
    assert_eq!(g.verify(&vs, &gid), Err(CertError::StrayGenesis));
    let mut g = QuorumCert::genesis(gid);
    g.data.height = Height(1);
    assert_eq!(g.verify(&vs, &gid), Err(CertError::StrayGenesis));
    // Non-zero views with inconsistent vote data.
    let mut d = vote_data(5, 1);
    d.parent_view = View(5);
    assert_eq!(
        qc_signed(&vs, &ks, &d, &[0, 1, 2]).verify(&vs, &gid),
        Err(CertError::BadVoteData)
    );
    let mut d = vote_data(5, 1);
    d.height = Height(0);
    assert_eq!(
        qc_signed(&vs, &ks, &d, &[0, 1, 2]).verify(&vs, &gid),
        Err(CertError::BadVoteData)
    );
}

#[test]
fn qc_weighted_quorum_counts_power_not_signers() {
    // Powers 1,1,1,4: N = 7, F = 2, quorum = 5. The heavy validator plus one light one suffices;
    // the three light ones do not.
    let mut ks: Vec<PrivateKey> = (0..4)
        .map(|i| PrivateKey::from_seed([i as u8 + 40; 32]))
        .collect();
    let heavy = ks[3].public();
    let infos = ks
        .iter()
        .map(|k| ValidatorInfo {
            public_key: k.public(),
            power: if k.public() == heavy { 4 } else { 1 },
        })
        .collect();
    let vs = ValidatorSet::new("w", Epoch(0), infos).unwrap();
    ks.sort_by_key(|k| vs.index_of(&k.public()).unwrap());
    let h = vs.index_of(&heavy).unwrap().as_usize();
    let light: Vec<usize> = (0..4).filter(|i| *i != h).collect();
    assert_eq!(vs.quorum(), 5);
    let gid = genesis_id(&vs);
    let data = vote_data(2, 3);
    let mut two = vec![h, light[0]];
    two.sort();
    assert_eq!(qc_signed(&vs, &ks, &data, &two).verify(&vs, &gid), Ok(()));
    assert_eq!(
        qc_signed(&vs, &ks, &data, &light).verify(&vs, &gid),
        Err(CertError::NoQuorum {
            power: 3,
            quorum: 5
        })
    );
    assert_eq!(
        qc_signed(&vs, &ks, &data, &[h]).verify(&vs, &gid),
        Err(CertError::NoQuorum {
            power: 4,
            quorum: 5
        })
    );
}

/// A valid QC of view `w` (or the genesis QC for w = 0).
fn high_qc(vs: &ValidatorSet, ks: &[PrivateKey], w: u64) -> QuorumCert {
    if w == 0 {
        QuorumCert::genesis(genesis_id(vs))
    } else {
        let q = quorum(vs);
        qc_signed(vs, ks, &vote_data(w, 4), &(0..q).collect::<Vec<_>>())
    }
}

proptest! {
    #![proptest_config(PtConfig::with_cases(96))]

    #[test]
    fn tc_thresholds_and_consistency(
        n in 1usize..=20,
        mask in any::<u32>(),
        view in 2u64..50,
        w_frac in 0u64..100,
        hqc_seed in prop::collection::vec(any::<u64>(), 20),
    ) {
        let (vs, ks) = keys(n);
        let gid = genesis_id(&vs);
        let q = quorum(&vs);
        let w = w_frac % view; // high QC view < TC view
        let qc = high_qc(&vs, &ks, w);
        let signers = subset(n, mask);
        if signers.is_empty() {
            return Ok(());
        }
        // Each signer reports an hqc view ≤ w, at least one exactly w.
        let mut hqc: Vec<u64> = signers.iter().map(|&i| hqc_seed[i] % (w + 1)).collect();
        let top = (hqc_seed[0] as usize) % hqc.len();
        hqc[top] = w;

        let tc = tc_signed(&vs, &ks, view, qc.clone(), &signers, &hqc);
        let r = tc.verify(&vs, &gid);
        if signers.len() >= q {
            prop_assert_eq!(r, Ok(()));
        } else {
            prop_assert_eq!(r, Err(CertError::NoQuorum { power: signers.len() as u64, quorum: q as u64 }));
        }

        // An hqc view ≥ the TC view (properly signed) is rejected.
        let mut bad = hqc.clone();
        bad[top] = view + (hqc_seed[1] % 3);
        let tc_bad = tc_signed(&vs, &ks, view, qc.clone(), &signers, &bad);
        prop_assert!(matches!(tc_bad.verify(&vs, &gid), Err(CertError::InconsistentTc(_))));

        // high_qc.view ≠ max(hqc_views): all reports strictly below w (w > 0)...
        if w > 0 {
            let below: Vec<u64> = hqc.iter().map(|h| (*h).min(w - 1)).collect();
            let tc_lo = tc_signed(&vs, &ks, view, qc.clone(), &signers, &below);
            prop_assert!(matches!(tc_lo.verify(&vs, &gid), Err(CertError::InconsistentTc(_))));
        }
        // ... or one report above the carried QC (still below the TC view).
        if w + 1 < view {
            let mut above = hqc.clone();
            above[top] = w + 1;
            let tc_hi = tc_signed(&vs, &ks, view, qc.clone(), &signers, &above);
            prop_assert!(matches!(tc_hi.verify(&vs, &gid), Err(CertError::InconsistentTc(_))));
        }

        if signers.len() >= q {
            // A report changed after signing.
            let mut forged = tc.clone();
            forged.hqc_views[top] = View(if w == 0 { 0 } else { w - 1 });
            if forged.hqc_views != tc.hqc_views {
                let r = forged.verify(&vs, &gid);
                let is_err = matches!(r, Err(CertError::BadSignature) | Err(CertError::InconsistentTc(_)));
                prop_assert!(is_err);
            }
            // hqc count ≠ sig count.
            let mut short = tc.clone();
            short.hqc_views.pop();
            let is_count = matches!(short.verify(&vs, &gid), Err(CertError::SignatureCount { .. }));
            prop_assert!(is_count);
            // A signature flipped.
            let mut flipped = tc.clone();
            flipped.sigs[top] = flip(&flipped.sigs[top]);
            prop_assert_eq!(flipped.verify(&vs, &gid), Err(CertError::BadSignature));
            // The carried QC is invalid (one of its signatures flipped).
            if w > 0 {
                let mut badqc = tc.clone();
                badqc.high_qc.sigs[0] = flip(&badqc.high_qc.sigs[0]);
                prop_assert_eq!(badqc.verify(&vs, &gid), Err(CertError::BadSignature));
            }
            // The TC signed for another view.
            let mut moved = tc.clone();
            moved.view = View(view + 1);
            prop_assert_eq!(moved.verify(&vs, &gid), Err(CertError::BadSignature));
            // Wrong bitmap length.
            let mut bm = tc.clone();
            bm.signers.0.push(0);
            prop_assert_eq!(bm.verify(&vs, &gid), Err(CertError::BadBitmap));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Evidence
// ---------------------------------------------------------------------------------------------

const EV_N: usize = 7;

fn sv(vs: &ValidatorSet, k: &PrivateKey, data: VoteData) -> SignedVote {
    let sig = k.sign(vs.domain(), SigKind::Vote, &encode(&data));
    SignedVote { data, sig }
}

fn header(view: u64, height: u64, parent: BlockId, proposer: usize) -> BlockHeader {
    BlockHeader {
        epoch: Epoch(0),
        view: View(view),
        height: Height(height),
        parent,
        payload_digest: Digest([0xAB; 32]),
        proposer: ValidatorIndex(proposer as u16),
        justify_view: View(view - 1),
        justify_block: parent,
        skipped_leaders: vec![ValidatorIndex(1)],
    }
}

/// One valid evidence item of kind `kind` (0..=6, covering both E3 variants and both
/// invalid-proposal defects) against `o`.
fn build_evidence(
    vs: &ValidatorSet,
    ks: &[PrivateKey],
    kind: u8,
    o: usize,
    v: u64,
    a: u8,
) -> Evidence {
    let k = &ks[o];
    let offender = ValidatorIndex(o as u16);
    let mut d = vote_data(v + 2, a);
    match kind {
        0 => {
            let mut e = d.clone();
            e.block_id = Digest([a.wrapping_add(77); 32]);
            Evidence::DoubleVote {
                offender,
                a: sv(vs, k, d),
                b: sv(vs, k, e),
            }
        }
        1 => {
            let (ba, bb) = (Digest([a; 32]), Digest([a.wrapping_add(1); 32]));
            let view = View(v);
            Evidence::DoubleProposal {
                offender,
                view,
                block_a: ba,
                sig_a: k.sign(vs.domain(), SigKind::Proposal, &proposal_body(view, &ba)),
                block_b: bb,
                sig_b: k.sign(vs.domain(), SigKind::Proposal, &proposal_body(view, &bb)),
            }
        }
        2 => {
            // Vote in w1 = v+2 with parent_view v+1; later vote in v+5 with parent_view v.
            let mut later = vote_data(v + 5, a.wrapping_add(3));
            later.parent_view = View(v);
            Evidence::LockViolation {
                offender,
                vote: sv(vs, k, d),
                later: LaterMessage::Vote(sv(vs, k, later)),
            }
        }
        3 => {
            // Timeout in the same view w1 reporting a lock below parent_view.
            d.parent_view = View(v + 1);
            let (view, hqc_view) = (View(v + 2), View(v));
            Evidence::LockViolation {
                offender,
                vote: sv(vs, k, d),
                later: LaterMessage::Timeout {
                    view,
                    hqc_view,
                    sig: k.sign(vs.domain(), SigKind::Timeout, &timeout_body(view, hqc_view)),
                },
            }
        }
        4 => {
            let view = View(v + 3);
            let (ha, hb) = (View(v), View(v + 1));
            Evidence::ConflictingTimeouts {
                offender,
                view,
                hqc_a: ha,
                sig_a: k.sign(vs.domain(), SigKind::Timeout, &timeout_body(view, ha)),
                hqc_b: hb,
                sig_b: k.sign(vs.domain(), SigKind::Timeout, &timeout_body(view, hb)),
            }
        }
        5 => {
            // Structural defect: parent ≠ justify_block.
            let mut h = header(v + 2, 3, Digest([a; 32]), o);
            h.justify_block = Digest([a.wrapping_add(9); 32]);
            let id = h.id(vs.domain());
            Evidence::InvalidProposal {
                offender,
                sig: k.sign(vs.domain(), SigKind::Proposal, &proposal_body(h.view, &id)),
                header: h,
                parent: None,
            }
        }
        _ => {
            // Height defect, proven by the parent header.
            let p = header(v + 1, 3, Digest([a; 32]), (o + 1) % vs.len());
            let pid = p.id(vs.domain());
            let h = header(v + 2, 5, pid, o); // should be 4
            let id = h.id(vs.domain());
            Evidence::InvalidProposal {
                offender,
                sig: k.sign(vs.domain(), SigKind::Proposal, &proposal_body(h.view, &id)),
                header: h,
                parent: Some(p),
            }
        }
    }
}

fn bump_v(v: &mut View) {
    v.0 = v.0.wrapping_add(1);
}
fn bump_d(d: &mut Digest) {
    d.0[0] ^= 0x80;
}
fn bump_s(s: &mut Signature) {
    s.0[0] ^= 0x01;
}
fn vote_data_tamperings(d: &VoteData) -> Vec<VoteData> {
    let mut out = Vec::new();
    let mut x = d.clone();
    bump_v(&mut x.view);
    out.push(x);
    let mut x = d.clone();
    bump_d(&mut x.block_id);
    out.push(x);
    let mut x = d.clone();
    x.height.0 += 1;
    out.push(x);
    let mut x = d.clone();
    bump_d(&mut x.parent_id);
    out.push(x);
    let mut x = d.clone();
    x.parent_view.0 = x.parent_view.0.wrapping_sub(1);
    out.push(x);
    out
}
fn sv_tamperings(s: &SignedVote) -> Vec<SignedVote> {
    let mut out: Vec<SignedVote> = vote_data_tamperings(&s.data)
        .into_iter()
        .map(|data| SignedVote { data, sig: s.sig })
        .collect();
    let mut x = s.clone();
    bump_s(&mut x.sig);
    out.push(x);
    out
}
fn header_tamperings(h: &BlockHeader) -> Vec<BlockHeader> {
    let mut out = Vec::new();
    let mut x = h.clone();
    x.epoch.0 += 1;
    out.push(x);
    let mut x = h.clone();
    bump_v(&mut x.view);
    out.push(x);
    let mut x = h.clone();
    x.height.0 += 1;
    out.push(x);
    let mut x = h.clone();
    bump_d(&mut x.parent);
    out.push(x);
    let mut x = h.clone();
    bump_d(&mut x.payload_digest);
    out.push(x);
    let mut x = h.clone();
    x.proposer.0 ^= 1;
    out.push(x);
    let mut x = h.clone();
    bump_v(&mut x.justify_view);
    out.push(x);
    let mut x = h.clone();
    bump_d(&mut x.justify_block);
    out.push(x);
    let mut x = h.clone();
    x.skipped_leaders.push(ValidatorIndex(0));
    out.push(x);
    out
}

/// Every single-field tampering of `e` (other than the offender).
fn tamperings(e: &Evidence) -> Vec<Evidence> {
    let mut out = Vec::new();
    match e {
        Evidence::DoubleVote { offender, a, b } => {
            for x in sv_tamperings(a) {
                out.push(Evidence::DoubleVote {
                    offender: *offender,
                    a: x,
                    b: b.clone(),
                });
            }
            for x in sv_tamperings(b) {
                out.push(Evidence::DoubleVote {
                    offender: *offender,
                    a: a.clone(),
                    b: x,
                });
            }
        }
        Evidence::DoubleProposal { .. } => {
            for f in 0..6 {
                let mut x = e.clone();
                if let Evidence::DoubleProposal {
                    view,
                    block_a,
                    sig_a,
                    block_b,
                    sig_b,
                    ..
                } = &mut x
                {
                    match f {
                        0 => bump_v(view),
                        1 => bump_d(block_a),
                        2 => bump_s(sig_a),
                        3 => bump_d(block_b),
                        4 => bump_s(sig_b),
                        _ => *block_b = *block_a,
                    }
                }
                out.push(x);
            }
        }
        Evidence::LockViolation {
            offender,
            vote,
            later,
        } => {
            for x in sv_tamperings(vote) {
                out.push(Evidence::LockViolation {
                    offender: *offender,
                    vote: x,
                    later: later.clone(),
                });
            }
            let laters: Vec<LaterMessage> = match later {
                LaterMessage::Vote(s) => sv_tamperings(s)
                    .into_iter()
                    .map(LaterMessage::Vote)
                    .collect(),
                LaterMessage::Timeout {
                    view,
                    hqc_view,
                    sig,
                } => {
                    let mut l = Vec::new();
                    let (mut v2, mut h2, mut s2) = (*view, *hqc_view, *sig);
                    bump_v(&mut v2);
                    l.push(LaterMessage::Timeout {
                        view: v2,
                        hqc_view: *hqc_view,
                        sig: *sig,
                    });
                    bump_v(&mut h2);
                    l.push(LaterMessage::Timeout {
                        view: *view,
                        hqc_view: h2,
                        sig: *sig,
                    });
                    bump_s(&mut s2);
                    l.push(LaterMessage::Timeout {
                        view: *view,
                        hqc_view: *hqc_view,
                        sig: s2,
                    });
                    l
                }
            };
            for l in laters {
                out.push(Evidence::LockViolation {
                    offender: *offender,
                    vote: vote.clone(),
                    later: l,
                });
            }
        }
        Evidence::ConflictingTimeouts { .. } => {
            for f in 0..6 {
                let mut x = e.clone();
                if let Evidence::ConflictingTimeouts {
                    view,
                    hqc_a,
                    sig_a,
                    hqc_b,
                    sig_b,
                    ..
                } = &mut x
                {
                    match f {
                        0 => bump_v(view),
                        1 => bump_v(hqc_a),
                        2 => bump_s(sig_a),
                        3 => hqc_b.0 += 5,
                        4 => bump_s(sig_b),
                        _ => *hqc_b = *hqc_a,
                    }
                }
                out.push(x);
            }
        }
        Evidence::InvalidProposal {
            offender,
            header,
            sig,
            parent,
        } => {
            for h in header_tamperings(header) {
                out.push(Evidence::InvalidProposal {
                    offender: *offender,
                    header: h,
                    sig: *sig,
                    parent: parent.clone(),
                });
            }
            let mut s = *sig;
            bump_s(&mut s);
            out.push(Evidence::InvalidProposal {
                offender: *offender,
                header: header.clone(),
                sig: s,
                parent: parent.clone(),
            });
            // The parent header matters only when it is the proof (height defect).
            if let Some(p) = parent {
                out.push(Evidence::InvalidProposal {
                    offender: *offender,
                    header: header.clone(),
                    sig: *sig,
                    parent: None,
                });
                for ph in header_tamperings(p) {
                    out.push(Evidence::InvalidProposal {
                        offender: *offender,
                        header: header.clone(),
                        sig: *sig,
                        parent: Some(ph),
                    });
                }
            }
        }
    }
    out
}

fn with_offender(e: &Evidence, who: ValidatorIndex) -> Evidence {
    let mut x = e.clone();
    match &mut x {
        Evidence::DoubleVote { offender, .. }
        | Evidence::DoubleProposal { offender, .. }
        | Evidence::LockViolation { offender, .. }
        | Evidence::ConflictingTimeouts { offender, .. }
        | Evidence::InvalidProposal { offender, .. } => *offender = who,
    }
    x
}

proptest! {
    #![proptest_config(PtConfig::with_cases(64))]

    #[test]
    fn evidence_valid_tampered_and_misattributed(
        kind in 0u8..7,
        o in 0usize..EV_N,
        other in 1usize..EV_N,
        v in 1u64..1_000_000,
        a in any::<u8>(),
    ) {
        let (vs, ks) = keys(EV_N);
        let e = build_evidence(&vs, &ks, kind, o, v, a);
        prop_assert_eq!(e.verify(&vs), Ok(()), "kind {} {:?}", kind, e);
        // Round trip keeps it valid.
        let back: Evidence = decode(&encode(&e), MAX_MESSAGE_BYTES).unwrap();
        prop_assert_eq!(back.verify(&vs), Ok(()));

        for t in tamperings(&e) {
            prop_assert!(t.verify(&vs).is_err(), "tampered evidence verified: {:?}", t);
        }
        // Against a different member.
        let someone = ValidatorIndex(((o + other) % EV_N) as u16);
        let r = with_offender(&e, someone).verify(&vs);
        prop_assert!(
            matches!(r, Err(EvidenceError::BadSignature) | Err(EvidenceError::NoConflict(_))),
            "misattributed evidence: {:?}", r
        );
        // Against a non-member index.
        let r = with_offender(&e, ValidatorIndex(EV_N as u16)).verify(&vs);
        prop_assert_eq!(r, Err(EvidenceError::UnknownOffender(ValidatorIndex(EV_N as u16))));
        // In another validator set (different chain id): signatures do not carry over.
        let (other_vs, _) = keys_for("other", 0, EV_N);
        prop_assert!(e.verify(&other_vs).is_err());
    }

    /// Evidence decoded from arbitrary structure verifies only if it was really signed:
    /// random signatures never verify.
    #[test]
    fn random_evidence_never_verifies(e in evidence_s()) {
        let (vs, _) = keys(EV_N);
        prop_assert!(e.verify(&vs).is_err());
    }
}

#[test]
fn evidence_non_conflicts_rejected() {
    let (vs, ks) = keys(4);
    let k = &ks[2];
    let o = ValidatorIndex(2);
    // E1 with the same block twice, or different views.
    let d = vote_data(5, 1);
    let same = Evidence::DoubleVote {
        offender: o,
        a: sv(&vs, k, d.clone()),
        b: sv(&vs, k, d.clone()),
    };
    assert!(matches!(
        same.verify(&vs),
        Err(EvidenceError::NoConflict(_))
    ));
    let other_view = Evidence::DoubleVote {
        offender: o,
        a: sv(&vs, k, d.clone()),
        b: sv(&vs, k, vote_data(6, 2)),
    };
    assert!(matches!(
        other_view.verify(&vs),
        Err(EvidenceError::NoConflict(_))
    ));
    // E3 where the later vote does not regress (parent view equal) or is not later.
    let mut later = vote_data(8, 3);
    later.parent_view = d.parent_view;
    let lv = Evidence::LockViolation {
        offender: o,
        vote: sv(&vs, k, d.clone()),
        later: LaterMessage::Vote(sv(&vs, k, later)),
    };
    assert!(matches!(lv.verify(&vs), Err(EvidenceError::NoConflict(_))));
    let mut earlier = vote_data(4, 3);
    earlier.parent_view = View(0);
    let lv = Evidence::LockViolation {
        offender: o,
        vote: sv(&vs, k, d.clone()),
        later: LaterMessage::Vote(sv(&vs, k, earlier)),
    };
    assert!(matches!(lv.verify(&vs), Err(EvidenceError::NoConflict(_))));
    // E3 timeout in an earlier view than the vote.
    let (view, hqc) = (View(4), View(0));
    let lv = Evidence::LockViolation {
        offender: o,
        vote: sv(&vs, k, d),
        later: LaterMessage::Timeout {
            view,
            hqc_view: hqc,
            sig: k.sign(vs.domain(), SigKind::Timeout, &timeout_body(view, hqc)),
        },
    };
    assert!(matches!(lv.verify(&vs), Err(EvidenceError::NoConflict(_))));
    // A well-formed header is not an invalid proposal.
    let h = header(5, 3, Digest([1; 32]), 2);
    let id = h.id(vs.domain());
    let ip = Evidence::InvalidProposal {
        offender: o,
        sig: k.sign(vs.domain(), SigKind::Proposal, &proposal_body(h.view, &id)),
        header: h,
        parent: None,
    };
    assert!(matches!(ip.verify(&vs), Err(EvidenceError::NoConflict(_))));
}
