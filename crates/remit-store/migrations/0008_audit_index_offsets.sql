-- A slimmer audit index: a row keeps where its entry is in the segment files (`segment`,
-- the segment's first entry; `seg_offset`, the line's first byte; `len`, the line's length
-- without its `\n`) instead of the entry's text. Readers read the line from the segment
-- and check it against `leaf`.
--
-- Logs kept in the database alone (written before segment files: `audit_state.segment` is
-- NULL) still need their text to be written out to their first segment; it is kept, for
-- that only, in `audit_entries_before_segments`, which the move empties.
CREATE TABLE audit_entries_before_segments AS
    SELECT replica, seq, kind, id, time, identity, human, purpose, verdict, entry, leaf
    FROM audit_entries
    WHERE replica IN (SELECT replica FROM audit_state WHERE segment IS NULL);
CREATE INDEX audit_entries_before_segments_by_seq
    ON audit_entries_before_segments (replica, seq);

DROP TABLE audit_entries;
CREATE TABLE audit_entries (
    replica    TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    time       TEXT    NOT NULL,
    identity   TEXT,
    human      TEXT,
    purpose    TEXT,
    verdict    TEXT,
    segment    INTEGER NOT NULL,
    seg_offset INTEGER NOT NULL,
    len        INTEGER NOT NULL,
    leaf       BLOB    NOT NULL,
    UNIQUE (replica, seq)
);
CREATE INDEX audit_entries_by_id ON audit_entries (id, kind);

-- Every log with segment files is indexed again from them (the segments are the log; the
-- index is derived data) at the next open: forget how far the old index had read, and its
-- checkpoints, which the segments hold too.
DELETE FROM audit_checkpoints
    WHERE replica IN (SELECT replica FROM audit_state WHERE segment IS NOT NULL);
DELETE FROM audit_state WHERE segment IS NOT NULL;
