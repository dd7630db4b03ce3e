-- Behaviour alerts (remit-anomaly) raised by the gateway: one row per alert, with its
-- evidence and a small state machine (open -> acknowledged -> resolved; open -> resolved),
-- each transition naming who and why. The decision record that raised an alert carries it
-- too (`alerts` in the audit log); this table is where alerts are worked.
CREATE TABLE alerts (
    id          TEXT PRIMARY KEY,
    replica     TEXT NOT NULL,
    identity    TEXT NOT NULL,
    credential  TEXT,
    detector    TEXT NOT NULL,
    confidence  INTEGER NOT NULL CHECK (confidence BETWEEN 0 AND 100),
    severity    TEXT NOT NULL CHECK (severity IN ('low', 'medium', 'high')),
    evidence    TEXT NOT NULL,
    decision_id TEXT NOT NULL,
    time        TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
    quarantined INTEGER NOT NULL DEFAULT 0,
    ack_by      TEXT,
    ack_reason  TEXT,
    ack_time    TEXT,
    resolved_by     TEXT,
    resolved_reason TEXT,
    resolved_time   TEXT
);
CREATE INDEX alerts_by_state ON alerts (state, time);
CREATE INDEX alerts_by_identity ON alerts (identity, time);
