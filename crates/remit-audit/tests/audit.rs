//! The audit log's pure parts: RFC 9162 trees and proofs, chains, checkpoints, and the
//! verifier against every kind of tampering.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use remit_audit::merkle::{inclusion_path, leaf_hash, root, verify_inclusion};
use remit_audit::{
    AuditKey, Chain, Checkpoint, Entry, Frontier, Hash, InclusionProof, ProofError, PublicKey,
    SignedCheckpoint, Tamper, Verifier,
};

/// The test vectors of the RFC 6962 reference implementation (certificate-transparency,
/// `merkle_tree_test.cc`): leaf inputs and the tree heads of their first n leaves.
const CT_INPUTS: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];
const CT_ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

#[test]
fn tree_heads_match_the_rfc_6962_reference_vectors() {
    let leaves: Vec<Hash> = CT_INPUTS
        .iter()
        .map(|h| leaf_hash(&hex::decode(h).unwrap()))
        .collect();
    let mut frontier = Frontier::new();
    assert_eq!(
        frontier.root().to_hex(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    for (n, want) in CT_ROOTS.iter().enumerate() {
        frontier.push(leaves[n]);
        assert_eq!(
            root(&leaves[..=n]).to_hex(),
            *want,
            "root of {} leaves",
            n + 1
        );
        assert_eq!(
            frontier.root().to_hex(),
            *want,
            "frontier of {} leaves",
            n + 1
        );
    }
}

fn leaves(n: usize) -> Vec<Hash> {
    (0..n)
        .map(|i| leaf_hash(i.to_string().as_bytes()))
        .collect()
}

#[test]
fn every_inclusion_proof_verifies_and_no_other_leaf_or_size_does() {
    for n in 1..=40usize {
        let ls = leaves(n);
        let head = root(&ls);
        for i in 0..n {
            let path = inclusion_path(&ls, i).unwrap();
            assert!(
                verify_inclusion(&ls[i], i as u64, n as u64, &path, &head),
                "{i} of {n}"
            );
            let other = ls[(i + 1) % n];
            if n > 1 {
                assert!(!verify_inclusion(&other, i as u64, n as u64, &path, &head));
            }
            // The sibling's position with this leaf's path.
            if (i ^ 1) < n {
                assert!(!verify_inclusion(
                    &ls[i],
                    (i ^ 1) as u64,
                    n as u64,
                    &path,
                    &head
                ));
            }
            assert!(!verify_inclusion(&ls[i], n as u64, n as u64, &path, &head));
        }
        assert!(inclusion_path(&ls, n).is_none());
    }
}

proptest! {
    #[test]
    fn the_frontier_always_agrees_with_the_recursive_head(n in 0usize..300) {
        let ls = leaves(n);
        let mut f = Frontier::new();
        for l in &ls { f.push(*l); }
        prop_assert_eq!(f.root(), root(&ls));
        let again = Frontier::from_parts(f.size(), f.nodes().to_vec()).unwrap();
        prop_assert_eq!(again.root(), f.root());
    }

    #[test]
    fn a_flipped_bit_in_a_path_never_verifies(n in 2usize..64, i in 0usize..64, bit in 0usize..256, node in 0usize..8) {
        let i = i % n;
        let ls = leaves(n);
        let head = root(&ls);
        let mut path = inclusion_path(&ls, i).unwrap();
        let node = node % path.len();
        path[node].0[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(!verify_inclusion(&ls[i], i as u64, n as u64, &path, &head));
    }
}

#[test]
fn a_frontier_with_the_wrong_number_of_hashes_is_refused() {
    assert!(Frontier::from_parts(3, vec![Hash::ZERO]).is_err());
    assert!(Frontier::from_parts(0, vec![Hash::ZERO]).is_err());
}

/// A stored log: entries with their ids, and signed checkpoints.
struct Log {
    entries: Vec<(String, Entry)>,
    checkpoints: Vec<SignedCheckpoint>,
    key: AuditKey,
}

fn record(i: u64) -> Vec<u8> {
    remit_audit::canonical(&serde_json::json!({
        "kind": "decision", "decision_id": format!("d-{i}"), "identity": "support-assistant",
        "decision": if i.is_multiple_of(3) { "deny" } else { "allow" }, "path": format!("/tickets/{i}"),
        "note": "quotes \" and unicode é ✓ and control \u{1}",
    }))
    .unwrap()
}

/// `n` entries with a checkpoint every `every`.
fn log(n: u64, every: u64) -> Log {
    let key = AuditKey::from_seed([7; 32]);
    let mut chain = Chain::new("replica-a").unwrap();
    let mut entries = Vec::new();
    let mut checkpoints = Vec::new();
    for i in 0..n {
        entries.push((format!("d-{i}"), chain.append(&record(i))));
        if (i + 1) % every == 0 {
            checkpoints.push(sign(&key, &chain));
        }
    }
    Log {
        entries,
        checkpoints,
        key,
    }
}

fn sign(key: &AuditKey, chain: &Chain) -> SignedCheckpoint {
    key.sign(Checkpoint {
        v: 1,
        replica: chain.replica().into(),
        tree_size: chain.size(),
        root: chain.root(),
        time: "2026-11-25T00:00:00Z".into(),
        key_id: key.public().key_id(),
    })
}

/// Verifies rows as a store holds them: (stored seq, id, bytes, stored leaf).
fn verify_rows(
    rows: &[(u64, String, Vec<u8>, Option<Hash>)],
    keys: &[PublicKey],
    checkpoints: Vec<SignedCheckpoint>,
) -> Result<remit_audit::Summary, Tamper> {
    let mut v = Verifier::new("replica-a", keys, checkpoints)?;
    for (seq, id, bytes, leaf) in rows {
        v.entry(*seq, id, bytes, *leaf)?;
    }
    v.finish()
}

fn rows(log: &Log, with_leaf: bool) -> Vec<(u64, String, Vec<u8>, Option<Hash>)> {
    log.entries
        .iter()
        .map(|(id, e)| {
            (
                e.seq,
                id.clone(),
                e.bytes.clone(),
                with_leaf.then_some(e.leaf),
            )
        })
        .collect()
}

#[test]
fn an_untouched_log_verifies() {
    let l = log(57, 10);
    let s = verify_rows(&rows(&l, true), &[l.key.public()], l.checkpoints.clone()).unwrap();
    assert_eq!((s.entries, s.checkpoints, s.unanchored), (57, 5, 7));
    // Entries are canonical JSON: re-canonicalising changes nothing.
    for (_, e) in &l.entries {
        let v: serde_json::Value = serde_json::from_slice(&e.bytes).unwrap();
        assert_eq!(remit_audit::canonical(&v).unwrap(), e.bytes);
    }
}

fn edit(bytes: &[u8]) -> Vec<u8> {
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .replace("\"allow\"", "\"deny\"")
        .replace("/tickets/", "/tickets/9")
        .into_bytes()
}

#[test]
fn an_edited_field_is_detected_naming_the_record() {
    let l = log(40, 10);
    let keys = [l.key.public()];
    // With the stored hash left alone: named exactly.
    let mut r = rows(&l, true);
    r[13].2 = edit(&r[13].2);
    assert_eq!(
        verify_rows(&r, &keys, l.checkpoints.clone()),
        Err(Tamper::ContentChanged {
            seq: 13,
            id: "d-13".into()
        })
    );
    // With the stored hash recomputed too: the next record's `prev` names it.
    r[13].3 = Some(leaf_hash(&r[13].2));
    assert_eq!(
        verify_rows(&r, &keys, l.checkpoints.clone()),
        Err(Tamper::ChainBroken {
            seq: 13,
            id: "d-13".into(),
            next: 14
        })
    );
    // The last record before a checkpoint has no successor: the checkpoint catches it.
    let mut r = rows(&l, false);
    r[39].2 = edit(&r[39].2);
    let err = verify_rows(&r, &keys, l.checkpoints.clone()).unwrap_err();
    assert_eq!(
        err,
        Tamper::CheckpointMismatch {
            tree_size: 40,
            from: 30,
            to: 39
        }
    );
    assert!(err.to_string().contains("records 30..=39"), "{err}");
}

#[test]
fn a_rewritten_chain_is_caught_by_the_checkpoint_covering_it() {
    // The attacker edits record 12 and recomputes every later entry and stored hash.
    let l = log(30, 10);
    let mut chain = Chain::new("replica-a").unwrap();
    let mut r = Vec::new();
    for i in 0..30u64 {
        let rec = if i == 12 { edit(&record(i)) } else { record(i) };
        let e = chain.append(&rec);
        r.push((e.seq, format!("d-{i}"), e.bytes, Some(e.leaf)));
    }
    assert_eq!(
        verify_rows(&r, &[l.key.public()], l.checkpoints.clone()),
        Err(Tamper::CheckpointMismatch {
            tree_size: 20,
            from: 10,
            to: 19
        })
    );
}

#[test]
fn a_deleted_record_is_detected_naming_it() {
    let l = log(30, 10);
    let mut r = rows(&l, true);
    r.remove(7);
    assert_eq!(
        verify_rows(&r, &[l.key.public()], l.checkpoints.clone()),
        Err(Tamper::Missing {
            expected: 7,
            found: 8,
            id: "d-8".into()
        })
    );
}

#[test]
fn an_inserted_record_is_detected() {
    let l = log(30, 10);
    // A forged entry at position 5, chained correctly onto record 4.
    let mut chain = Chain::new("replica-a").unwrap();
    for (_, e) in &l.entries[..5] {
        chain.append(
            &serde_json::to_vec(
                &serde_json::from_slice::<serde_json::Value>(&e.bytes).unwrap()["record"],
            )
            .unwrap(),
        );
    }
    let forged = chain.append(&record(999));
    let mut r = rows(&l, true);
    r.insert(5, (5, "forged".into(), forged.bytes, Some(forged.leaf)));
    // The forged entry is a valid extension of records 0..=4 on its own; the record it
    // displaced is what gives it away.
    let err = verify_rows(&r, &[l.key.public()], l.checkpoints.clone()).unwrap_err();
    assert_eq!(
        err,
        Tamper::Repeated {
            found: 5,
            id: "d-5".into(),
            after: 5
        }
    );
    assert!(err.to_string().contains("inserted"), "{err}");
    // The same forged entry appended at the end (after the last checkpoint) is caught
    // by its position.
    let l = log(20, 10);
    let mut r = rows(&l, true);
    let dup = r[19].clone();
    r.push(dup);
    assert_eq!(
        verify_rows(&r, &[l.key.public()], l.checkpoints.clone()),
        Err(Tamper::Repeated {
            found: 19,
            id: "d-19".into(),
            after: 19
        })
    );
}

#[test]
fn reordered_records_are_detected() {
    let l = log(30, 10);
    let mut r = rows(&l, true);
    r.swap(3, 4);
    assert_eq!(
        verify_rows(&r, &[l.key.public()], l.checkpoints.clone()),
        Err(Tamper::Missing {
            expected: 3,
            found: 4,
            id: "d-4".into()
        })
    );
}

#[test]
fn truncation_behind_a_checkpoint_is_detected() {
    let l = log(30, 10);
    let mut r = rows(&l, true);
    r.truncate(25);
    assert_eq!(
        verify_rows(&r, &[l.key.public()], l.checkpoints.clone()),
        Err(Tamper::Truncated {
            have: 25,
            tree_size: 30
        })
    );
}

#[test]
fn a_replaced_checkpoint_is_detected() {
    let l = log(30, 10);
    let keys = [l.key.public()];
    // A checkpoint whose root was changed, keeping the old signature.
    let mut cps = l.checkpoints.clone();
    cps[1].checkpoint.root = Hash::ZERO;
    let err = verify_rows(&rows(&l, true), &keys, cps).unwrap_err();
    assert!(
        matches!(
            err,
            Tamper::Checkpoint {
                tree_size: 20,
                error: remit_audit::KeyError::BadSignature
            }
        ),
        "{err}"
    );
    // A checkpoint signed by another key, claiming the trusted key's id.
    let other = AuditKey::from_seed([9; 32]);
    let mut cps = l.checkpoints.clone();
    let mut forged = other.sign(cps[2].checkpoint.clone());
    forged.checkpoint.key_id = l.key.public().key_id();
    cps[2] = forged;
    assert!(matches!(
        verify_rows(&rows(&l, true), &keys, cps),
        Err(Tamper::Checkpoint { tree_size: 30, .. })
    ));
}

#[test]
fn swapped_keys_are_detected() {
    // Every checkpoint re-signed by an attacker's key: verifying with the trusted key
    // refuses them.
    let l = log(30, 10);
    let attacker = AuditKey::from_seed([42; 32]);
    let cps: Vec<_> = l
        .checkpoints
        .iter()
        .map(|c| {
            let mut cp = c.checkpoint.clone();
            cp.key_id = attacker.public().key_id();
            attacker.sign(cp)
        })
        .collect();
    let err = verify_rows(&rows(&l, true), &[l.key.public()], cps).unwrap_err();
    assert!(
        matches!(
            err,
            Tamper::Checkpoint {
                tree_size: 10,
                error: remit_audit::KeyError::Untrusted(_)
            }
        ),
        "{err}"
    );
}

#[test]
fn the_key_files_round_trip_and_malformed_keys_are_refused() {
    let k = AuditKey::from_seed([3; 32]);
    let again = AuditKey::from_file_text(&k.to_file_text()).unwrap();
    assert_eq!(again.public(), k.public());
    assert_eq!(
        PublicKey::from_file_text(&k.public().to_file_text()).unwrap(),
        k.public()
    );
    for bad in ["", "zz", &"0".repeat(63), &"g".repeat(64), &"0".repeat(65)] {
        assert!(AuditKey::from_file_text(bad).is_err(), "{bad:?}");
        assert!(PublicKey::from_file_text(bad).is_err(), "{bad:?}");
    }
    assert!(!format!("{k:?}").contains(&hex::encode([3u8; 32])));
}

#[test]
fn inclusion_proofs_verify_alone_and_fail_when_touched() {
    let l = log(23, 23);
    let cp = l.checkpoints.last().unwrap().clone();
    let leaves: Vec<Hash> = l.entries.iter().map(|(_, e)| e.leaf).collect();
    let keys = [l.key.public()];
    for seq in [0u64, 1, 11, 22] {
        let entry = String::from_utf8(l.entries[seq as usize].1.bytes.clone()).unwrap();
        let proof = InclusionProof::build(&leaves, seq, entry, cp.clone()).unwrap();
        let json = serde_json::to_string(&proof).unwrap();
        let back: InclusionProof = serde_json::from_str(&json).unwrap();
        assert_eq!(back.verify(&keys).unwrap(), l.entries[seq as usize].1.leaf);

        let mut p = back.clone();
        p.entry = p.entry.replace("support-assistant", "someone-else");
        assert_eq!(p.verify(&keys), Err(ProofError::Path));
        let mut p = back.clone();
        p.seq = (seq + 1) % 23;
        assert!(matches!(p.verify(&keys), Err(ProofError::Mismatch { .. })));
        let mut p = back.clone();
        p.checkpoint.checkpoint.tree_size = 24;
        assert!(p.verify(&keys).is_err());
        assert!(matches!(
            back.verify(&[AuditKey::from_seed([1; 32]).public()]),
            Err(ProofError::Checkpoint(_))
        ));
    }
    // A record outside the checkpoint's tree has no proof.
    assert!(InclusionProof::build(&leaves, 23, String::new(), cp).is_err());
}

#[test]
fn a_resumed_chain_continues_exactly_where_it_stopped() {
    let mut a = Chain::new("r").unwrap();
    for i in 0..13 {
        a.append(&record(i));
    }
    let mut b = Chain::resume(
        "r",
        a.prev(),
        Frontier::from_parts(a.size(), a.frontier().nodes().to_vec()).unwrap(),
    )
    .unwrap();
    assert_eq!(a.append(&record(13)), b.append(&record(13)));
    assert_eq!(a.root(), b.root());
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let text = prop_oneof![
        "[a-z_]{0,8}",
        any::<String>(),
        proptest::collection::vec(
            prop_oneof![
                Just('\u{1}'),
                Just('\u{7f}'),
                Just('é'),
                Just('\u{e000}'),
                Just('\u{1f600}'),
                Just('"'),
                Just('\\'),
                Just('\n'),
                Just('a')
            ],
            0..6
        )
        .prop_map(|c| c.into_iter().collect::<String>()),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        text.clone().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(text.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// Our RFC 8785 writer agrees byte for byte with an independent implementation.
    #[test]
    fn canonical_json_agrees_with_an_independent_jcs_implementation(v in json_value()) {
        prop_assert_eq!(
            remit_audit::canonical(&v).unwrap(),
            serde_json_canonicalizer::to_vec(&v).unwrap()
        );
    }
}

#[test]
fn canonical_json_sorts_members_by_utf16_code_units_and_writes_numbers_as_es6() {
    // U+E000 sorts before U+1F600 in UTF-8 but after it in UTF-16 (a surrogate pair).
    let v = serde_json::json!({"\u{e000}": 1, "\u{1f600}": 2, "b": [1.5, 1e21, -0.0, 100], "a": "\u{7f}\u{1}"});
    assert_eq!(
        String::from_utf8(remit_audit::canonical(&v).unwrap()).unwrap(),
        "{\"a\":\"\u{7f}\\u0001\",\"b\":[1.5,1e+21,0,100],\"\u{1f600}\":2,\"\u{e000}\":1}"
    );
}

/// Shapes records take that a `serde_json::Value` never has: struct fields in declaration
/// order (not key order), an internally tagged enum, a flattened map in hash order, newtype
/// and struct variants, floats and skipped fields.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Shaped {
    Record {
        zulu: Option<String>,
        alpha: Vec<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        maybe: Option<i64>,
        #[serde(rename = "\u{e000}")]
        private_use: f64,
        #[serde(rename = "\u{1f600}")]
        astral: Inner,
        #[serde(flatten)]
        extra: std::collections::HashMap<String, serde_json::Value>,
        middle: Vec<Variant>,
    },
    Other(Inner),
}

#[derive(Debug, Clone, serde::Serialize)]
struct Inner {
    z: bool,
    b: Option<Vec<u8>>,
    a: char,
}

#[derive(Debug, Clone, serde::Serialize)]
enum Variant {
    Unit,
    Newtype(u32),
    Tuple(i8, String),
    Struct { y: f32, x: i128 },
}

fn shaped() -> impl Strategy<Value = Shaped> {
    let inner = (
        any::<bool>(),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..4)),
        any::<char>(),
    )
        .prop_map(|(z, b, a)| Inner { z, b, a });
    let variant = prop_oneof![
        Just(Variant::Unit),
        any::<u32>().prop_map(Variant::Newtype),
        (any::<i8>(), any::<String>()).prop_map(|(a, b)| Variant::Tuple(a, b)),
        (
            any::<f32>().prop_filter("finite", |f| f.is_finite()),
            any::<i64>()
        )
            .prop_map(|(y, x)| Variant::Struct {
                y,
                x: i128::from(x)
            }),
    ];
    // Flattened keys never collide with the fixed fields: a repeated key is an error.
    let extra = proptest::collection::hash_map("x[a-z\u{e9}\u{1f600}]{0,3}", json_value(), 0..5);
    prop_oneof![
        (
            proptest::option::of(any::<String>()),
            proptest::collection::vec(any::<u64>(), 0..4),
            proptest::option::of(any::<i64>()),
            // Non-finite floats are `null` here and an error there (a unit test covers them).
            any::<f64>().prop_filter("finite", |f| f.is_finite()),
            inner.clone(),
            extra,
            proptest::collection::vec(variant, 0..4),
        )
            .prop_map(|(zulu, alpha, maybe, private_use, astral, extra, middle)| {
                Shaped::Record {
                    zulu,
                    alpha,
                    maybe,
                    private_use,
                    astral,
                    extra,
                    middle,
                }
            }),
        inner.prop_map(Shaped::Other),
    ]
}

proptest! {
    /// Written straight from the structs, records are byte for byte what an independent
    /// RFC 8785 implementation writes (it goes through `serde_json::Value`).
    #[test]
    fn canonical_json_of_derived_types_agrees_with_an_independent_jcs_implementation(v in shaped()) {
        prop_assert_eq!(
            String::from_utf8(remit_audit::canonical(&v).unwrap()).unwrap(),
            String::from_utf8(serde_json_canonicalizer::to_vec(&v).unwrap()).unwrap()
        );
    }
}
