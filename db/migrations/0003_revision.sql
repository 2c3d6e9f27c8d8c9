-- The flake revision a deployment deployed (nix flake metadata's
-- "revision"), shown by status and the schedule summary, and the lock an
-- install was approved with (JSON of nixdeploy.Lock), which the run uses
-- instead of resolving again, so a push between approval and run changes
-- nothing that runs.
ALTER TABLE deployments ADD COLUMN revision TEXT NOT NULL DEFAULT '';
ALTER TABLE deployments ADD COLUMN lock TEXT NOT NULL DEFAULT '';
