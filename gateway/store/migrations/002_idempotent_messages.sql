-- Chargers deliver at least once: a lost answer makes them send the same message again, so storing one
-- must be idempotent.

-- A 2.0.1 station may reuse a transactionId after a reset (its counter restarts): only one *open* session
-- per (charger, transactionId); closed ones keep theirs.
DROP INDEX transactions_ocpp_id;
CREATE UNIQUE INDEX transactions_open_ocpp_id ON transactions (charger_id, ocpp_id)
    WHERE stopped_at IS NULL AND ocpp_id IS NOT NULL;
CREATE INDEX transactions_ocpp_id ON transactions (charger_id, ocpp_id);

-- A meter value received twice is stored once: same charger, EVSE, time and sampled values.
ALTER TABLE meter_values ADD COLUMN digest INTEGER;
CREATE UNIQUE INDEX meter_values_once ON meter_values (charger_id, evse, ts, digest);
