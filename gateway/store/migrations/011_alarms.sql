-- Alarms: each alarm's state as the engine keeps it (data: its JSON), so that a restart neither raises again
-- what was acknowledged nor forgets what is active; a journal of every transition; and the notifications
-- (e-mail, webhook) waiting for delivery, written in the same transaction as the transition they tell about.
CREATE TABLE alarm_state (
    id TEXT PRIMARY KEY,
    definition TEXT NOT NULL,
    point TEXT NOT NULL,
    state TEXT NOT NULL,
    level INTEGER NOT NULL,
    data TEXT NOT NULL,
    updated TEXT NOT NULL
);

CREATE TABLE alarm_journal (
    id INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    alarm TEXT NOT NULL,
    kind TEXT NOT NULL,
    before TEXT NOT NULL,
    after TEXT NOT NULL,
    level INTEGER NOT NULL,
    actor TEXT,
    comment TEXT,
    record TEXT NOT NULL
);
CREATE INDEX alarm_journal_alarm ON alarm_journal (alarm, id);
CREATE INDEX alarm_journal_ts ON alarm_journal (ts);

-- state: queued (waiting, or retrying after a failure: attempts, last_error, next_try), sent (sent_at; batch is
-- the message it went out in -- one digest carries many; late = 1 when it went out late, after an outage).
CREATE TABLE alarm_notifications (
    id INTEGER PRIMARY KEY,
    created TEXT NOT NULL,
    route TEXT NOT NULL,
    channel TEXT NOT NULL,
    alarm TEXT NOT NULL,
    kind TEXT NOT NULL,
    record TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try TEXT NOT NULL,
    last_error TEXT,
    sent_at TEXT,
    batch TEXT,
    late INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX alarm_notifications_queued ON alarm_notifications (next_try) WHERE state = 'queued';
CREATE INDEX alarm_notifications_created ON alarm_notifications (created);
