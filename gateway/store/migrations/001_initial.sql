-- Times are fixed-width UTC text (2026-11-21T09:30:00.000Z): text order is time order.

-- What each charger said about itself at boot, and when it came and went.
CREATE TABLE chargers (
    id TEXT PRIMARY KEY,
    vendor TEXT,
    model TEXT,
    serial TEXT,
    firmware TEXT,
    ocpp_version TEXT,
    first_seen TEXT NOT NULL,
    last_boot TEXT,
    last_connected TEXT,
    last_disconnected TEXT
);

-- Ids refused at the handshake because nobody configured them, for a technician to accept.
CREATE TABLE pending_chargers (
    id TEXT PRIMARY KEY,
    remote TEXT,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1
);

-- Latest status per connector, so a restart knows what it knew.
CREATE TABLE connector_status (
    charger_id TEXT NOT NULL,
    evse INTEGER NOT NULL,
    connector INTEGER NOT NULL,
    status TEXT NOT NULL,
    error_code TEXT,
    info TEXT,
    ts TEXT NOT NULL,
    PRIMARY KEY (charger_id, evse, connector)
);

-- Charging sessions. id is also the OCPP 1.6 transactionId: AUTOINCREMENT never hands out an id twice,
-- across restarts and deletions. ocpp_id is the charger's own transactionId (OCPP 2.0.1), NULL for 1.6.
CREATE TABLE transactions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    charger_id TEXT NOT NULL,
    ocpp_id TEXT,
    evse INTEGER,
    connector INTEGER,
    id_tag TEXT,
    started_at TEXT,
    stopped_at TEXT,
    meter_start_wh REAL,
    meter_last_wh REAL,
    meter_stop_wh REAL,
    energy_wh REAL,
    soc_start REAL,
    soc_end REAL,
    stop_reason TEXT,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX transactions_ocpp_id ON transactions (charger_id, ocpp_id);
CREATE INDEX transactions_started_at ON transactions (started_at);
CREATE INDEX transactions_open ON transactions (charger_id, evse) WHERE stopped_at IS NULL;

-- Meter values as received: one row per timestamp, its sampled values as the charger sent them (JSON).
CREATE TABLE meter_values (
    id INTEGER PRIMARY KEY,
    charger_id TEXT NOT NULL,
    evse INTEGER NOT NULL,
    transaction_id INTEGER REFERENCES transactions (id),
    ts TEXT NOT NULL,
    sampled_value TEXT NOT NULL
);
CREATE INDEX meter_values_charger_ts ON meter_values (charger_id, ts);
CREATE INDEX meter_values_transaction ON meter_values (transaction_id);

-- Messages that carry a charger's own report and no session data: NotifyEvent, DataTransfer, ...
CREATE TABLE charger_events (
    id INTEGER PRIMARY KEY,
    charger_id TEXT NOT NULL,
    ts TEXT NOT NULL,
    action TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX charger_events_charger_ts ON charger_events (charger_id, ts);

-- Every command through the one door: who, what, on what, and how it ended.
CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    command TEXT NOT NULL,
    target TEXT,
    request TEXT,
    outcome TEXT,
    result TEXT,
    finished_at TEXT
);
CREATE INDEX audit_ts ON audit (ts);

CREATE TABLE users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- API tokens are stored as SHA-256 digests; the token itself is shown once, at creation.
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    label TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    last_used_at TEXT
);
