-- What happened on the site, in order: allocation changes, fail-safe on and off, ... (the load cap and,
-- later, the other parts). kind says what; payload is JSON.
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX events_kind_ts ON events (kind, ts);
