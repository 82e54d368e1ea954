-- Charging profiles per charger and EVSE (0: the charger as a whole). source: "sent" (the gateway sent it and
-- the charger accepted it) or "reported" (the charger listed it, 2.0.1 ReportChargingProfiles). The profile is
-- kept as the JSON on the wire, in the charger's version spelling; the columns beside it index what a
-- ClearChargingProfile filters on. A new profile with the same id on the same EVSE replaces the old one.
CREATE TABLE charging_profiles (
    charger_id TEXT NOT NULL,
    evse INTEGER NOT NULL,
    profile_id INTEGER NOT NULL,
    source TEXT NOT NULL,
    stack_level INTEGER NOT NULL,
    purpose TEXT NOT NULL,
    kind TEXT NOT NULL,
    transaction_id TEXT,
    valid_from TEXT,
    valid_to TEXT,
    limit_source TEXT,
    request_id INTEGER,
    updated_at TEXT NOT NULL,
    profile TEXT NOT NULL,
    PRIMARY KEY (charger_id, evse, profile_id, source)
);
CREATE INDEX charging_profiles_transaction ON charging_profiles (charger_id, transaction_id)
    WHERE transaction_id IS NOT NULL;

-- Limits a charger says an outside source put on it (2.0.1 NotifyChargingLimit), until it says they are
-- cleared (ClearedChargingLimit). evse 0: the charger as a whole. schedule: its chargingSchedule list (JSON).
CREATE TABLE charging_limits (
    charger_id TEXT NOT NULL,
    evse INTEGER NOT NULL,
    limit_source TEXT NOT NULL,
    grid_critical INTEGER,
    schedule TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (charger_id, evse, limit_source)
);

-- What the EV on an EVSE said it needs (2.0.1 NotifyEVChargingNeeds), the latest per EVSE, with the session it
-- came in (the gateway's transaction id). energy_wh: what the session needs in all, counted from its start.
CREATE TABLE ev_charging_needs (
    charger_id TEXT NOT NULL,
    evse INTEGER NOT NULL,
    transaction_id INTEGER,
    departure_time TEXT,
    energy_wh REAL,
    max_power_w REAL,
    needs TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (charger_id, evse)
);

-- The charging schedule the EV chose (2.0.1 NotifyEVChargingSchedule), the latest per EVSE.
CREATE TABLE ev_charging_schedules (
    charger_id TEXT NOT NULL,
    evse INTEGER NOT NULL,
    transaction_id INTEGER,
    time_base TEXT NOT NULL,
    schedule TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (charger_id, evse)
);
