-- What chargers report about themselves: the 2.0.1 device model, monitors, display messages, customer
-- information, and the security events of both versions. How much one charger may store is bounded in
-- gateway/store/reports.py.

-- The device model: one row per attribute (Actual, Target, MinSet, MaxSet) of a variable of a component.
-- Absent instances are '' and an absent EVSE or connector is 0, so that the key is unique as written.
-- characteristics: the variable's characteristics as received (JSON: unit, dataType, minLimit, ...).
CREATE TABLE device_model (
    charger_id TEXT NOT NULL,
    component TEXT NOT NULL,
    component_instance TEXT NOT NULL,
    evse INTEGER NOT NULL,
    connector INTEGER NOT NULL,
    variable TEXT NOT NULL,
    variable_instance TEXT NOT NULL,
    attribute TEXT NOT NULL,
    value TEXT,
    mutability TEXT,
    persistent INTEGER,
    constant INTEGER,
    characteristics TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (charger_id, component, component_instance, evse, connector, variable, variable_instance, attribute)
);

-- Reports a charger sends in parts (tbc): device model (NotifyReport), monitoring (NotifyMonitoringReport),
-- display messages (NotifyDisplayMessages), customer information (NotifyCustomerInformation), per requestId.
-- asked: what the gateway asked for (FullInventory, GetReport, ...) and status the charger's answer, when the
-- request went through the gateway; whole = 1 when the report covers everything of its kind. parts counts the
-- messages received (a repeat of the last one is not counted again); final_seq_no is the seqNo of the one
-- that said tbc = false; items are what was stored of them, dropped what did not fit.
CREATE TABLE reports (
    charger_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    request_id INTEGER NOT NULL,
    asked TEXT,
    status TEXT,
    whole INTEGER NOT NULL DEFAULT 0,
    parts INTEGER NOT NULL DEFAULT 0,
    last_seq_no INTEGER,
    final_seq_no INTEGER,
    complete INTEGER NOT NULL DEFAULT 0,
    items INTEGER NOT NULL DEFAULT 0,
    dropped INTEGER NOT NULL DEFAULT 0,
    generated_at TEXT,
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (charger_id, kind, request_id)
);
CREATE INDEX reports_updated ON reports (charger_id, updated_at);

-- Variable monitors, by the id the charger gave them.
CREATE TABLE monitors (
    charger_id TEXT NOT NULL,
    id INTEGER NOT NULL,
    component TEXT NOT NULL,
    component_instance TEXT NOT NULL,
    evse INTEGER NOT NULL,
    connector INTEGER NOT NULL,
    variable TEXT NOT NULL,
    variable_instance TEXT NOT NULL,
    type TEXT NOT NULL,
    severity INTEGER NOT NULL,
    value REAL NOT NULL,
    transaction_only INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (charger_id, id)
);

-- What the charger agreed to about monitoring as a whole (SetMonitoringBase, SetMonitoringLevel).
CREATE TABLE monitoring (
    charger_id TEXT PRIMARY KEY,
    base TEXT,
    level INTEGER,
    updated_at TEXT NOT NULL
);

-- Display messages, by their id; info is the MessageInfo as received (JSON); request_id the
-- GetDisplayMessages that reported it, NULL when it was set through the gateway.
CREATE TABLE display_messages (
    charger_id TEXT NOT NULL,
    id INTEGER NOT NULL,
    request_id INTEGER,
    info TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (charger_id, id)
);

-- The parts of customer information reports (joined per request when read).
CREATE TABLE customer_information (
    charger_id TEXT NOT NULL,
    request_id INTEGER NOT NULL,
    seq_no INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (charger_id, request_id, seq_no)
);

-- Security events, as received; critical per the spec's list of security events.
CREATE TABLE security_events (
    id INTEGER PRIMARY KEY,
    charger_id TEXT NOT NULL,
    type TEXT NOT NULL,
    ts TEXT NOT NULL,
    tech_info TEXT,
    critical INTEGER NOT NULL,
    received_at TEXT NOT NULL
);
CREATE INDEX security_events_charger ON security_events (charger_id, id);
