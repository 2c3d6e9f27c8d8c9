package db

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// Remote steps: the supervised long steps of deployments (migration 0005,
// deployer/supervise.go). *DB satisfies deployer.RemoteStore.

const remoteCols = `id, deployment_id, host, step, runner, run_dir, name, pgid, out_offset, err_offset,
	started_at, timeout_ns, lock, before_system, state, exit_code, coalesce(ended_at, 0)`

func scanRemote(row interface{ Scan(...any) error }) (nixdeploy.RemoteStep, error) {
	var r nixdeploy.RemoteStep
	var started, timeout, ended int64
	var lock string
	err := row.Scan(&r.ID, &r.DeploymentID, &r.Host, &r.Step, &r.Runner, &r.Dir, &r.Name, &r.PGID, &r.OutOffset, &r.ErrOffset,
		&started, &timeout, &lock, &r.Before, &r.State, &r.ExitCode, &ended)
	if err != nil {
		return r, err
	}
	r.StartedAt, r.Timeout = fromNanos(started), time.Duration(timeout)
	if ended != 0 {
		r.EndedAt = fromNanos(ended)
	}
	if lock != "" {
		r.Lock = &nixdeploy.Lock{}
		if err := json.Unmarshal([]byte(lock), r.Lock); err != nil {
			return r, fmt.Errorf("remote step %d: decode lock: %w", r.ID, err)
		}
	}
	return r, nil
}

// StartRemoteStep records a supervised step about to start and sets rs.ID.
func (d *DB) StartRemoteStep(ctx context.Context, rs *nixdeploy.RemoteStep) error {
	lock, err := encodeLock(rs.Lock)
	if err != nil {
		return err
	}
	res, err := d.sql.ExecContext(ctx, `INSERT INTO remote_steps (deployment_id, host, step, runner, run_dir, name, pgid,
		out_offset, err_offset, started_at, timeout_ns, lock, before_system, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running')`,
		rs.DeploymentID, rs.Host, rs.Step, rs.Runner, rs.Dir, rs.Name, rs.PGID, rs.OutOffset, rs.ErrOffset,
		nanos(rs.StartedAt), int64(rs.Timeout), lock, rs.Before)
	if err != nil {
		return fmt.Errorf("record remote step %s of deployment %d: %w", rs.Step, rs.DeploymentID, err)
	}
	rs.ID, err = res.LastInsertId()
	rs.State = nixdeploy.RemoteRunning
	return err
}

// SetRemotePGID records the step's process group on the runner.
func (d *DB) SetRemotePGID(ctx context.Context, id int64, pgid int) error {
	res, err := d.sql.ExecContext(ctx, `UPDATE remote_steps SET pgid = ? WHERE id = ?`, pgid, id)
	if err != nil {
		return fmt.Errorf("record process group of remote step %d: %w", id, err)
	}
	return checkOne(res, fmt.Sprintf("remote step %d", id))
}

// EndRemoteStep records that a remote step ended with exitCode, or that
// its end cannot be known (nixdeploy.RemoteUnknown), which keeps its host
// locked until a sweep finds it ended.
func (d *DB) EndRemoteStep(ctx context.Context, id int64, state nixdeploy.RemoteState, exitCode int) error {
	if state == nixdeploy.RemoteRunning {
		return fmt.Errorf("end remote step %d: running is not an end", id)
	}
	res, err := d.sql.ExecContext(ctx, `UPDATE remote_steps SET state = ?, exit_code = ?, ended_at = ? WHERE id = ?`,
		state, exitCode, d.now(), id)
	if err != nil {
		return fmt.Errorf("end remote step %d: %w", id, err)
	}
	return checkOne(res, fmt.Sprintf("remote step %d", id))
}

// RemoteSteps lists a deployment's remote steps in state, oldest first.
func (d *DB) RemoteSteps(ctx context.Context, deploymentID int64, state nixdeploy.RemoteState) ([]nixdeploy.RemoteStep, error) {
	return d.remoteSteps(ctx, `SELECT `+remoteCols+` FROM remote_steps WHERE deployment_id = ? AND state = ? ORDER BY id`, deploymentID, state)
}

// OpenRemoteSteps lists every remote step still running or of unknown
// end, oldest first: what the sweep looks for on the runner.
func (d *DB) OpenRemoteSteps(ctx context.Context) ([]nixdeploy.RemoteStep, error) {
	return d.remoteSteps(ctx, `SELECT `+remoteCols+` FROM remote_steps WHERE state IN ('running', 'unknown') ORDER BY id`)
}

func (d *DB) remoteSteps(ctx context.Context, q string, args ...any) ([]nixdeploy.RemoteStep, error) {
	rows, err := d.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read remote steps: %w", err)
	}
	defer rows.Close()
	var out []nixdeploy.RemoteStep
	for rows.Next() {
		r, err := scanRemote(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// LastLogSeq is the highest stored line number of a deployment (0 when
// none is stored).
func (d *DB) LastLogSeq(ctx context.Context, deploymentID int64) (int64, error) {
	var n int64
	err := d.queryRow(ctx, `SELECT coalesce(max(last_seq), 0) FROM log_chunks WHERE deployment_id = ?`, deploymentID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("last log line of deployment %d: %w", deploymentID, err)
	}
	return n, nil
}

// Reattachable lists the deployments whose owner's lease lapsed and that
// have a remote step still running: the ones a start reattaches to rather
// than marks interrupted (Open leaves them running). A deployment a
// graceful shutdown recorded interrupted while its step went on (the
// deployer's ErrDetached) is one of them.
func (d *DB) Reattachable(ctx context.Context) ([]nixdeploy.Deployment, error) {
	return d.queryDeployments(ctx, `SELECT `+deploymentCols+` FROM deployments WHERE state IN ('running', 'interrupted')
		AND EXISTS (SELECT 1 FROM remote_steps r WHERE r.deployment_id = deployments.id AND r.state = 'running')
		AND NOT `+liveOwner("deployments.owner")+` ORDER BY id`, d.now())
}

// Adopt makes this process the owner of a reattachable deployment (see
// Reattachable), running again, so it may finish it. Losing the race to
// another process (or a live owner) is a not-found error.
func (d *DB) Adopt(ctx context.Context, id int64) error {
	res, err := d.sql.ExecContext(ctx, `UPDATE deployments SET owner = ?, state = 'running', ended_at = 0, error = ''
		WHERE id = ? AND state IN ('running', 'interrupted')
		AND EXISTS (SELECT 1 FROM remote_steps r WHERE r.deployment_id = deployments.id AND r.state = 'running')
		AND NOT `+liveOwner("deployments.owner"), d.owner.ID, id, d.now())
	if err != nil {
		return fmt.Errorf("adopt deployment %d: %w", id, err)
	}
	return checkOne(res, fmt.Sprintf("deployment %d (not running, or its owner is alive)", id))
}

// remoteBusy is the deployment whose remote step on host may still run,
// other than id: such a host cannot be claimed (issue 14: no second
// install beside the first).
func remoteBusy(ctx context.Context, tx *sql.Tx, host string, id int64) (int64, error) {
	var holder int64
	err := tx.QueryRowContext(ctx, `SELECT deployment_id FROM remote_steps WHERE host = ? AND state IN ('running', 'unknown')
		AND deployment_id <> ? ORDER BY id LIMIT 1`, host, id).Scan(&holder)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return holder, err
}

// The cursor updates, one per stream. They run in nearly every log
// transaction of a supervised step, so they go through the statement cache:
// preparing them afresh each time was a tenth of the log writer's CPU in
// bench row 1.
const (
	setOutOffsetSQL = `UPDATE remote_steps SET out_offset = ? WHERE id = ? AND deployment_id = ?`
	setErrOffsetSQL = `UPDATE remote_steps SET err_offset = ? WHERE id = ? AND deployment_id = ?`
)

// setCursors records cursors in tx, the transaction that stores the lines
// they follow.
func (d *DB) setCursors(ctx context.Context, tx *sql.Tx, deploymentID int64, cursors []nixdeploy.LogCursor) error {
	for _, c := range cursors {
		q := setOutOffsetSQL
		if c.Stream == nixdeploy.StreamStderr {
			q = setErrOffsetSQL
		}
		st, err := d.prepared(ctx, q)
		if err != nil {
			return fmt.Errorf("record log offset of remote step %d: %w", c.RemoteStep, err)
		}
		if _, err := tx.StmtContext(ctx, st).ExecContext(ctx, c.Offset, c.RemoteStep, deploymentID); err != nil {
			return fmt.Errorf("record log offset of remote step %d: %w", c.RemoteStep, err)
		}
	}
	return nil
}
