-- Several nixdeploy processes (serve, console, deploy) may share one
-- database file. Each registers itself as an owner and renews a lease while
-- it lives; a deployment records the owner that created it, and a host is
-- claimed by a row naming the deployment and its owner. A claim or an
-- in-flight deployment whose owner's lease has lapsed is stale: another
-- process may take the host, and the next Open marks the deployment
-- interrupted. Rows from before this migration have owner '' (stale).
CREATE TABLE owners (
    id          TEXT    PRIMARY KEY,      -- hostname:pid:start (unix nanoseconds)
    pid         INTEGER NOT NULL,
    hostname    TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    lease_until INTEGER NOT NULL
) WITHOUT ROWID;

ALTER TABLE deployments ADD COLUMN owner TEXT NOT NULL DEFAULT '';

CREATE TABLE host_claims (
    host          TEXT    PRIMARY KEY,
    deployment_id INTEGER NOT NULL,        -- 0 while the deployment is being created
    owner         TEXT    NOT NULL,
    claimed_at    INTEGER NOT NULL
) WITHOUT ROWID;
