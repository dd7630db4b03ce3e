-- Decision records. `record` holds the whole record as JSON; the other columns index it.
CREATE TABLE decisions (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    id       TEXT NOT NULL UNIQUE,
    time     TEXT NOT NULL,
    replica  TEXT NOT NULL,
    identity TEXT,
    class    TEXT NOT NULL,
    verdict  TEXT NOT NULL,
    action   TEXT NOT NULL,
    record   TEXT NOT NULL
);
CREATE INDEX decisions_identity_time ON decisions (identity, time);
CREATE INDEX decisions_time ON decisions (time);
