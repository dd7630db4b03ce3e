-- The audit log's durable copy moved to append-only segment files (`audit/<replica>/`);
-- these tables became an index over them. `audit_state` now also records where in the
-- segments the index has read to: the segment (by its first entry) and the byte offset
-- just after the last line indexed. NULL: a log written before segment files.
ALTER TABLE audit_state ADD COLUMN segment INTEGER;
ALTER TABLE audit_state ADD COLUMN seg_offset INTEGER;
