-- Files exchanged with chargers over HTTP on the web port (gateway/web/files.py).
-- A link handed out in a request: its random token is the charger's only credential. Firmware links
-- (UpdateFirmware, SignedUpdateFirmware) serve file_name from {state_dir}/firmware; upload links
-- (GetDiagnostics, GetLog) take one file of at most max_bytes.
CREATE TABLE file_links (
    token TEXT PRIMARY KEY,
    charger_id TEXT NOT NULL,
    action TEXT NOT NULL,
    request_id INTEGER,
    file_name TEXT,
    max_bytes INTEGER,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT
);
CREATE INDEX file_links_expires ON file_links (expires_at);

-- Files received, under {state_dir}/uploads/ (path is relative to it); file_name is as the charger sent it.
CREATE TABLE uploads (
    id INTEGER PRIMARY KEY,
    charger_id TEXT NOT NULL,
    action TEXT NOT NULL,
    request_id INTEGER,
    file_name TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    received_at TEXT NOT NULL,
    remote TEXT
);
CREATE INDEX uploads_charger ON uploads (charger_id, id);

-- What chargers reported while downloading firmware or uploading diagnostics and logs, in order.
-- kind: firmware_status | diagnostics_status | log_status | publish_firmware_status.
CREATE TABLE file_status (
    id INTEGER PRIMARY KEY,
    charger_id TEXT NOT NULL,
    ts TEXT NOT NULL,
    kind TEXT NOT NULL,
    action TEXT NOT NULL,
    status TEXT NOT NULL,
    request_id INTEGER
);
CREATE INDEX file_status_charger ON file_status (charger_id, id);
