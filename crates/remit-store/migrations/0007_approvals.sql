-- Approvals: one row per approval, bound to the exact request it is for. State changes are
-- conditional updates (pending -> granted|denied, granted -> used), so concurrent answers
-- and presentations resolve to one winner. Rows are kept after use as the approval's
-- history; the audit log holds the evidence.
CREATE TABLE approvals (
    id             TEXT PRIMARY KEY,
    state          TEXT NOT NULL CHECK (state IN ('pending', 'granted', 'denied', 'used')),
    binding_digest TEXT NOT NULL,
    identity       TEXT NOT NULL,
    on_behalf_of   TEXT,
    purpose        TEXT,
    action         TEXT NOT NULL,
    resource_type  TEXT NOT NULL,
    resource_id    TEXT NOT NULL,
    method         TEXT NOT NULL,
    path           TEXT NOT NULL,
    body_sha256    TEXT,
    credential     TEXT,
    approvers      TEXT NOT NULL,
    requested_by   TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    decided_by     TEXT,
    decided_at     INTEGER,
    reason         TEXT,
    used_by        TEXT,
    used_at        INTEGER
);
CREATE INDEX approvals_by_binding ON approvals (binding_digest, state, expires_at);
CREATE INDEX approvals_by_identity ON approvals (identity, state, expires_at);
CREATE INDEX approvals_by_time ON approvals (created_at);
