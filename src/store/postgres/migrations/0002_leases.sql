-- Leases on ownership scopes (issue 13): the same rows and epochs as the fencing of
-- 0001_init. A row claimed before this migration keeps NULL here and reads as an expired
-- lease. `IF NOT EXISTS`: a schema that already has the columns is left as it is.
ALTER TABLE ownership ADD COLUMN IF NOT EXISTS expires_at_ms bigint;
ALTER TABLE ownership ADD COLUMN IF NOT EXISTS payload text;
