-- What the load cap is told from outside, kept across restarts: external site limits (one per source, with an
-- optional expiry), operators' limits per EVSE, and the mode.
CREATE TABLE external_limits (
    source TEXT PRIMARY KEY,
    limit_w REAL NOT NULL,
    expires_at TEXT,            -- NULL: until lifted
    set_at TEXT NOT NULL
);
CREATE TABLE manual_limits (
    charger_id TEXT NOT NULL,
    evse INTEGER NOT NULL,
    limit_w REAL NOT NULL,
    set_at TEXT NOT NULL,
    PRIMARY KEY (charger_id, evse)
);
CREATE TABLE loadcap_mode (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    mode TEXT NOT NULL,
    set_at TEXT NOT NULL
);
