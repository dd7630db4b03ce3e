#!/usr/bin/env python3
"""Check a remit audit log export without remit, using only Python's standard library.

    remit audit export --format jsonl > log.jsonl
    remit audit prove <decision-id> > proof.json
    python3 tools/verify_audit.py log.jsonl [--proof proof.json]

Follows docs/audit-format.md: every line is one entry's canonical JSON (RFC 8785), hashed
as an RFC 9162 leaf, SHA-256(0x00 || line); each entry names the previous entry's hash in
`prev` (all zeros for a replica's first entry) and its position in `seq`. A proof is
checked with the RFC 9162 section 2.1.3.2 algorithm against its checkpoint's root, and the
checkpoint's root against the tree head of the exported entries.

The checkpoint's Ed25519 signature is not checked here (the standard library has no
Ed25519); `remit audit verify --proof` checks it, as can any Ed25519 library over the
signed bytes the format document gives.

Exit status: 0 intact, 1 a problem found (the first one is named), 2 unusable input.
"""

import hashlib
import json
import sys

ZERO = "0" * 64


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def tree_head(leaves):
    """RFC 9162 section 2.1.1: the Merkle tree head of a list of leaf hashes."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(tree_head(leaves[:k]), tree_head(leaves[k:]))


def verify_inclusion(leaf, index, size, path, root):
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def canonical(value) -> bytes:
    # RFC 8785 for the values remit writes (ASCII member names, integers, strings).
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def fail(message):
    print("TAMPERED: " + message)
    sys.exit(1)


def main(argv):
    if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] != "--proof"):
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print("usage: verify_audit.py EXPORT.jsonl [--proof PROOF.json]", file=sys.stderr)
        return 2
    chains = {}  # replica -> (next seq, prev hex, [leaf hashes])
    with open(argv[1], "rb") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip(b"\n")
            try:
                entry = json.loads(line)
                replica, seq, prev = entry["replica"], entry["seq"], entry["prev"]
            except (ValueError, KeyError, TypeError) as e:
                fail(f"line {n} is not an entry ({e})")
            if canonical(entry) != line:
                fail(f"line {n} (record {seq} of {replica}) is not in canonical form")
            expected, last, leaves = chains.get(replica, (0, ZERO, []))
            if seq != expected:
                fail(f"line {n}: record {expected} of {replica} is missing or out of order (found {seq})")
            if prev != last:
                fail(f"line {n}: record {seq} of {replica} does not follow record {seq - 1} (prev {prev} != {last})")
            h = leaf_hash(line)
            leaves.append(h)
            chains[replica] = (seq + 1, h.hex(), leaves)
    for replica, (size, _, leaves) in sorted(chains.items()):
        print(f"ok: chain {replica}: {size} records, tree head {tree_head(leaves).hex()}")
    if len(argv) == 4:
        with open(argv[3], "rb") as f:
            proof = json.load(f)
        cp = proof["checkpoint"]["checkpoint"]
        entry_bytes = proof["entry"].encode()
        entry = json.loads(entry_bytes)
        if entry["seq"] != proof["seq"] or entry["replica"] != cp["replica"]:
            fail("the proof's entry is not the record it claims")
        leaf = leaf_hash(entry_bytes)
        path = [bytes.fromhex(p) for p in proof["path"]]
        root = bytes.fromhex(cp["root"])
        if not verify_inclusion(leaf, proof["seq"], cp["tree_size"], path, root):
            fail(f"the audit path of record {proof['seq']} does not lead to the checkpoint's root")
        leaves = chains.get(cp["replica"], (0, ZERO, []))[2]
        if len(leaves) < cp["tree_size"]:
            fail(f"the export has {len(leaves)} records of {cp['replica']}; the checkpoint covers {cp['tree_size']}")
        if tree_head(leaves[: cp["tree_size"]]) != root:
            fail(f"the export's first {cp['tree_size']} records do not match the checkpoint's root")
        if leaves[proof["seq"]] != leaf:
            fail(f"record {proof['seq']} in the export differs from the proof's entry")
        print(f"ok: record {proof['seq']} of {cp['replica']} is in the tree of {cp['tree_size']} records (root {cp['root']})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
