-- The site's badge list, managed by operators (/api/v1/badges). parent_id_tag groups badges (a fleet).
CREATE TABLE badges (
    id_tag TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    expiry TEXT,
    parent_id_tag TEXT,
    note TEXT,
    updated_at TEXT NOT NULL
);

-- The local authorization list each charger holds, as the gateway sent it (SendLocalList it accepted).
CREATE TABLE local_lists (
    charger_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE local_list_entries (
    charger_id TEXT NOT NULL,
    id_tag TEXT NOT NULL,
    status TEXT NOT NULL,
    expiry TEXT,
    parent_id_tag TEXT,
    PRIMARY KEY (charger_id, id_tag)
);

-- The authorization cache: the last answer given to each badge, and where it came from.
CREATE TABLE auth_cache (
    id_tag TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    expiry TEXT,
    parent_id_tag TEXT,
    source TEXT NOT NULL,
    charger_id TEXT,
    answered_at TEXT NOT NULL
);
CREATE INDEX auth_cache_answered ON auth_cache (answered_at);

-- Reservations the chargers accepted (reservation_id is the OCPP id). status: active, used, cancelled, expired,
-- removed (the charger dropped it).
CREATE TABLE reservations (
    id INTEGER PRIMARY KEY,
    reservation_id INTEGER NOT NULL,
    charger_id TEXT NOT NULL,
    evse INTEGER,
    id_tag TEXT NOT NULL,
    parent_id_tag TEXT,
    expiry TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    ended_at TEXT,
    transaction_id INTEGER
);
CREATE UNIQUE INDEX reservations_ocpp_id ON reservations (charger_id, reservation_id);
