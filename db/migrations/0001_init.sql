-- Times are INTEGER unix nanoseconds (UTC); 0 means "not yet".

CREATE TABLE deployments (
    id          INTEGER PRIMARY KEY,
    hosts       TEXT    NOT NULL,           -- JSON array of host names, in run order
    action      TEXT    NOT NULL,
    requester   TEXT    NOT NULL,
    source      TEXT    NOT NULL CHECK (source IN ('slack', 'schedule', 'cli')),
    state       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    started_at  INTEGER NOT NULL DEFAULT 0,
    ended_at    INTEGER NOT NULL DEFAULT 0,
    exit_code   INTEGER NOT NULL DEFAULT 0,
    error       TEXT    NOT NULL DEFAULT '',
    channel     TEXT    NOT NULL DEFAULT '',
    message_ts  TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX deployments_state ON deployments (state);

-- One row per deployment and host, so "last deployment of a host" is an index lookup.
CREATE TABLE deployment_hosts (
    deployment_id INTEGER NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    host          TEXT    NOT NULL,
    PRIMARY KEY (deployment_id, host)
);
CREATE INDEX deployment_hosts_host ON deployment_hosts (host, deployment_id);

CREATE TABLE steps (
    id            INTEGER PRIMARY KEY,
    deployment_id INTEGER NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    host          TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    started_at    INTEGER NOT NULL,
    ended_at      INTEGER NOT NULL,
    exit_code     INTEGER NOT NULL,
    error         TEXT    NOT NULL DEFAULT '',
    before_path   TEXT    NOT NULL DEFAULT '',
    after_path    TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX steps_deployment ON steps (deployment_id, id);

CREATE TABLE log_lines (
    deployment_id INTEGER NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    seq           INTEGER NOT NULL,
    ts            INTEGER NOT NULL,
    host          TEXT    NOT NULL,
    step          TEXT    NOT NULL,
    stream        TEXT    NOT NULL,
    text          TEXT    NOT NULL,
    PRIMARY KEY (deployment_id, seq)
) WITHOUT ROWID;

CREATE TABLE approvals (
    id            INTEGER PRIMARY KEY,
    deployment_id INTEGER NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    fingerprint   TEXT    NOT NULL,
    requester     TEXT    NOT NULL,
    channel       TEXT    NOT NULL DEFAULT '',
    message_ts    TEXT    NOT NULL DEFAULT '',
    state         TEXT    NOT NULL CHECK (state IN ('pending', 'approved', 'rejected', 'expired')),
    decided_by    TEXT    NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    decided_at    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX approvals_message ON approvals (channel, message_ts);
CREATE INDEX approvals_state ON approvals (state);

CREATE TABLE audit_events (
    id            INTEGER PRIMARY KEY,
    ts            INTEGER NOT NULL,
    actor         TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    deployment_id INTEGER NOT NULL DEFAULT 0,   -- 0: not about one deployment
    detail        TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX audit_events_deployment ON audit_events (deployment_id, id);

CREATE TABLE slack_events (
    event_id    TEXT    PRIMARY KEY,
    received_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE schedule_state (
    name        TEXT    PRIMARY KEY,
    paused      INTEGER NOT NULL DEFAULT 0,
    paused_by   TEXT    NOT NULL DEFAULT '',
    changed_at  INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE schedule_runs (
    id          INTEGER PRIMARY KEY,
    schedule    TEXT    NOT NULL,
    trigger     TEXT    NOT NULL,              -- cron, manual, catch-up
    scheduled_at INTEGER NOT NULL DEFAULT 0,
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER NOT NULL DEFAULT 0,
    outcome     TEXT    NOT NULL DEFAULT 'running',
    detail      TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX schedule_runs_schedule ON schedule_runs (schedule, id);

CREATE TABLE schedule_run_hosts (
    run_id        INTEGER NOT NULL REFERENCES schedule_runs (id) ON DELETE CASCADE,
    host          TEXT    NOT NULL,
    outcome       TEXT    NOT NULL,
    deployment_id INTEGER NOT NULL DEFAULT 0,
    duration_ns   INTEGER NOT NULL DEFAULT 0,
    detail        TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (run_id, host)
);

-- Manual locks taken with "/nixdeploy lock HOST"; deployments' own per-host
-- exclusion lives in the deployer's memory.
CREATE TABLE host_locks (
    host        TEXT    PRIMARY KEY,
    holder      TEXT    NOT NULL,
    reason      TEXT    NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) WITHOUT ROWID;
