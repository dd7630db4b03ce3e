-- Behaviour baselines (remit-anomaly), one row per replica and identity, so they survive a
-- restart. `state` is the identity's baseline as JSON; its size is bounded by the
-- baseline's fixed-capacity sets (and checked on write).
CREATE TABLE anomaly_baselines (
    replica  TEXT NOT NULL,
    identity TEXT NOT NULL,
    state    TEXT NOT NULL,
    updated  TEXT NOT NULL,
    PRIMARY KEY (replica, identity)
);
