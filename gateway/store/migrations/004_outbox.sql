-- North-bound messages waiting for their receiver (the MQTT broker), deleted once it acknowledged them.
-- seq is the gateway's one gap-free counter over all durable messages: AUTOINCREMENT never hands a number
-- out twice, also after deletions and restarts. droppable = 1 for telemetry, which alone may be dropped
-- when the disk budget is reached.
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    ts TEXT NOT NULL,
    stream TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    droppable INTEGER NOT NULL
);
CREATE INDEX outbox_droppable ON outbox (seq) WHERE droppable = 1;

-- Counters kept by triggers, so they are exactly as durable as the rows: one row, read in O(1).
CREATE TABLE outbox_totals (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    messages INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    dropped INTEGER NOT NULL
);
INSERT INTO outbox_totals (id, messages, bytes, dropped) VALUES (1, 0, 0, 0);
CREATE TRIGGER outbox_queued AFTER INSERT ON outbox BEGIN
    UPDATE outbox_totals SET messages = messages + 1, bytes = bytes + length(CAST(NEW.payload AS BLOB)) WHERE id = 1;
END;
CREATE TRIGGER outbox_gone AFTER DELETE ON outbox BEGIN
    UPDATE outbox_totals SET messages = messages - 1, bytes = bytes - length(CAST(OLD.payload AS BLOB)) WHERE id = 1;
END;
