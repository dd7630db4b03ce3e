-- The tamper-evident audit log (remit-audit). Each replica appends to its own chain; an
-- entry's `entry` is the canonical JSON that is hashed, and `leaf` its RFC 9162 leaf hash
-- (a hint: `remit audit verify` recomputes every hash). The other columns index the record.
-- The unchained table of the first schema is kept, renamed, for reading only.
ALTER TABLE decisions RENAME TO decisions_v1_unchained;

CREATE TABLE audit_entries (
    replica  TEXT    NOT NULL,
    seq      INTEGER NOT NULL,
    kind     TEXT    NOT NULL,
    id       TEXT    NOT NULL,
    time     TEXT    NOT NULL,
    identity TEXT,
    human    TEXT,
    purpose  TEXT,
    verdict  TEXT,
    entry    TEXT    NOT NULL,
    leaf     BLOB    NOT NULL,
    UNIQUE (replica, seq),
    -- A decision id is recorded once, and its outcome once.
    UNIQUE (id, kind)
);
-- Two indexes only: every index is paid for on every request. Time-range searches scan
-- in insertion order (rowid), which is time order per replica.

-- Signed checkpoints: the replica's tree size and root at a moment.
CREATE TABLE audit_checkpoints (
    replica    TEXT    NOT NULL,
    tree_size  INTEGER NOT NULL,
    checkpoint TEXT    NOT NULL,
    PRIMARY KEY (replica, tree_size)
);

-- Each replica's chain state, written in the same transaction as its entries, so the
-- writer resumes without rereading the log.
CREATE TABLE audit_state (
    replica  TEXT PRIMARY KEY,
    size     INTEGER NOT NULL,
    prev     BLOB    NOT NULL,
    frontier BLOB    NOT NULL
);

-- Review copies of response bodies (the `log_output` obligation), bounded; the outcome
-- record that names them carries their digest, so they are tamper-evident too.
CREATE TABLE audit_bodies (
    id        TEXT PRIMARY KEY,
    body      BLOB    NOT NULL,
    total     INTEGER NOT NULL,
    truncated INTEGER NOT NULL
);
