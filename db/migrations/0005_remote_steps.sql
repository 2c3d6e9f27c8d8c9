-- Long steps (nixos-anywhere, nixos-rebuild) run on the runner under the
-- deployer's supervisor, so they outlive the bot's SSH connection and the
-- bot itself (issue 14). Each is recorded here while it runs: the runner,
-- the run directory and the step's process group there, and how far into
-- its output files the stored log reaches (out_offset, err_offset: written
-- in the transaction that stores the lines they cover). A process that
-- starts later reattaches to a step still 'running'; a host with a step
-- 'running' or 'unknown' (the bot gave up learning its end) cannot be
-- claimed by another deployment until the step is known to have ended.
CREATE TABLE remote_steps (
    id            INTEGER PRIMARY KEY,
    deployment_id INTEGER NOT NULL REFERENCES deployments(id),
    host          TEXT    NOT NULL,
    step          TEXT    NOT NULL,
    runner        TEXT    NOT NULL,
    run_dir       TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    pgid          INTEGER NOT NULL DEFAULT 0,
    out_offset    INTEGER NOT NULL DEFAULT 0,
    err_offset    INTEGER NOT NULL DEFAULT 0,
    started_at    INTEGER NOT NULL,
    timeout_ns    INTEGER NOT NULL,
    lock          TEXT    NOT NULL DEFAULT '',
    before_system TEXT    NOT NULL DEFAULT '',
    state         TEXT    NOT NULL DEFAULT 'running',
    exit_code     INTEGER NOT NULL DEFAULT 0,
    ended_at      INTEGER
);
CREATE INDEX remote_steps_open ON remote_steps (host) WHERE state IN ('running', 'unknown');
CREATE INDEX remote_steps_deployment ON remote_steps (deployment_id);
