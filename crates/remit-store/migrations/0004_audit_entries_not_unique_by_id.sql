-- The index must take every entry the segment files hold, in order, or it stops. A
-- decision id twice (a bug upstream, a replay) is now recorded twice in the chain, as
-- the segments hold it, rather than failing its batch; lookups by id take the first.
CREATE TABLE audit_entries_v4 (
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
    UNIQUE (replica, seq)
);
INSERT INTO audit_entries_v4 (rowid, replica, seq, kind, id, time, identity, human, purpose, verdict, entry, leaf)
    SELECT rowid, replica, seq, kind, id, time, identity, human, purpose, verdict, entry, leaf FROM audit_entries;
DROP TABLE audit_entries;
ALTER TABLE audit_entries_v4 RENAME TO audit_entries;
CREATE INDEX audit_entries_by_id ON audit_entries (id, kind);
