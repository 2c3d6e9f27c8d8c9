package db

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

const deploymentCols = `id, hosts, action, requester, source, state, created_at, started_at, ended_at, exit_code, error, channel, message_ts, revision, lock`

func scanDeployment(row interface{ Scan(...any) error }) (nixdeploy.Deployment, error) {
	var (
		d                       nixdeploy.Deployment
		hosts                   string
		created, started, ended int64
		lock                    string
	)
	err := row.Scan(&d.ID, &hosts, &d.Action, &d.Requester, &d.Source, &d.State, &created, &started, &ended,
		&d.ExitCode, &d.Error, &d.Channel, &d.MessageTS, &d.Revision, &lock)
	if err != nil {
		return d, err
	}
	if lock != "" {
		d.Lock = new(nixdeploy.Lock)
		if err := json.Unmarshal([]byte(lock), d.Lock); err != nil {
			return d, fmt.Errorf("deployment %d: bad lock column: %w", d.ID, err)
		}
	}
	if err := json.Unmarshal([]byte(hosts), &d.Hosts); err != nil {
		return d, fmt.Errorf("deployment %d: bad hosts column: %w", d.ID, err)
	}
	d.CreatedAt, d.StartedAt, d.EndedAt = fromNanos(created), fromNanos(started), fromNanos(ended)
	return d, nil
}

// CreateDeployment inserts d and sets its ID (and CreatedAt and State when
// unset).
func (d *DB) CreateDeployment(ctx context.Context, dep *nixdeploy.Deployment) error {
	if len(dep.Hosts) == 0 {
		return fmt.Errorf("create deployment: no hosts")
	}
	if dep.CreatedAt.IsZero() {
		dep.CreatedAt = d.Now().UTC()
	}
	if dep.State == "" {
		dep.State = nixdeploy.StateQueued
	}
	hosts, err := json.Marshal(dep.Hosts)
	if err != nil {
		return err
	}
	lock, err := encodeLock(dep.Lock)
	if err != nil {
		return err
	}
	return d.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO deployments
			(hosts, action, requester, source, state, created_at, started_at, ended_at, exit_code, error, channel, message_ts, revision, lock, owner)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			string(hosts), dep.Action, dep.Requester, dep.Source, dep.State, nanos(dep.CreatedAt),
			nanos(dep.StartedAt), nanos(dep.EndedAt), dep.ExitCode, dep.Error, dep.Channel, dep.MessageTS, dep.Revision, lock, d.owner.ID)
		if err != nil {
			return fmt.Errorf("create deployment: %w", err)
		}
		if dep.ID, err = res.LastInsertId(); err != nil {
			return err
		}
		for _, h := range dep.Hosts {
			if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO deployment_hosts (deployment_id, host) VALUES (?, ?)`, dep.ID, h); err != nil {
				return fmt.Errorf("create deployment: %w", err)
			}
		}
		return nil
	})
}

func encodeLock(l *nixdeploy.Lock) (string, error) {
	if l == nil {
		return "", nil
	}
	b, err := json.Marshal(l)
	if err != nil {
		return "", fmt.Errorf("encode lock: %w", err)
	}
	return string(b), nil
}

// SetRevision records the flake revision deployment id deployed.
func (d *DB) SetRevision(ctx context.Context, id int64, revision string) error {
	res, err := d.sql.ExecContext(ctx, `UPDATE deployments SET revision = ? WHERE id = ?`, revision, id)
	if err != nil {
		return fmt.Errorf("set revision of deployment %d: %w", id, err)
	}
	return checkOne(res, fmt.Sprintf("deployment %d", id))
}

// SetLock records what deployment id was approved with; the run uses it.
func (d *DB) SetLock(ctx context.Context, id int64, l *nixdeploy.Lock) error {
	lock, err := encodeLock(l)
	if err != nil {
		return err
	}
	res, err := d.sql.ExecContext(ctx, `UPDATE deployments SET lock = ? WHERE id = ?`, lock, id)
	if err != nil {
		return fmt.Errorf("set lock of deployment %d: %w", id, err)
	}
	return checkOne(res, fmt.Sprintf("deployment %d", id))
}

// Deployment returns one deployment.
func (d *DB) Deployment(ctx context.Context, id int64) (nixdeploy.Deployment, error) {
	row := d.queryRow(ctx, `SELECT `+deploymentCols+` FROM deployments WHERE id = ?`, id)
	dep, err := scanDeployment(row)
	return dep, notFound(err, fmt.Sprintf("deployment %d", id))
}

// Deployments lists the newest deployments first, touching host when host
// is not empty, at most limit of them.
func (d *DB) Deployments(ctx context.Context, host string, limit int) ([]nixdeploy.Deployment, error) {
	if limit <= 0 {
		limit = 10
	}
	q := `SELECT ` + deploymentCols + ` FROM deployments ORDER BY id DESC LIMIT ?`
	args := []any{limit}
	if host != "" {
		q = `SELECT ` + prefixCols("d.", deploymentCols) + ` FROM deployments d
			JOIN deployment_hosts h ON h.deployment_id = d.id WHERE h.host = ? ORDER BY d.id DESC LIMIT ?`
		args = []any{host, limit}
	}
	return d.queryDeployments(ctx, q, args...)
}

// DeploymentsInState lists deployments in any of states, oldest first.
func (d *DB) DeploymentsInState(ctx context.Context, states ...nixdeploy.State) ([]nixdeploy.Deployment, error) {
	if len(states) == 0 {
		return nil, nil
	}
	args := make([]any, len(states))
	for i, s := range states {
		args[i] = s
	}
	q := `SELECT ` + deploymentCols + ` FROM deployments WHERE state IN (?` + strings.Repeat(",?", len(states)-1) + `) ORDER BY id`
	return d.queryDeployments(ctx, q, args...)
}

func (d *DB) queryDeployments(ctx context.Context, q string, args ...any) ([]nixdeploy.Deployment, error) {
	rows, err := d.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list deployments: %w", err)
	}
	defer rows.Close()
	var out []nixdeploy.Deployment
	for rows.Next() {
		dep, err := scanDeployment(rows)
		if err != nil {
			return nil, fmt.Errorf("list deployments: %w", err)
		}
		out = append(out, dep)
	}
	return out, rows.Err()
}

func prefixCols(p, cols string) string {
	parts := strings.Split(cols, ", ")
	for i := range parts {
		parts[i] = p + parts[i]
	}
	return strings.Join(parts, ", ")
}

// SetState moves a deployment to state. Starting to run stamps started_at
// and makes this process its owner;
// a final state stamps ended_at. A deployment already in a final state is
// not changed, so a late update can never resurrect it.
func (d *DB) SetState(ctx context.Context, id int64, state nixdeploy.State) error {
	const live = ` WHERE id = ? AND state IN ('queued', 'awaiting-approval', 'running')`
	q, args := `UPDATE deployments SET state = ?`+live, []any{state, id}
	switch {
	case state == nixdeploy.StateRunning:
		q, args = `UPDATE deployments SET state = ?, started_at = ?, owner = ?`+live, []any{state, d.now(), d.owner.ID, id}
	case state.Final():
		q, args = `UPDATE deployments SET state = ?, ended_at = ?`+live, []any{state, d.now(), id}
	}
	res, err := d.sql.ExecContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("set deployment %d %s: %w", id, state, err)
	}
	return checkOne(res, fmt.Sprintf("deployment %d (not found or already finished)", id))
}

// Finish records the end of a deployment: its final state, exit code and
// error text. It does nothing to a deployment that already ended, with one
// exception: a deployment this process owns that another process marked
// interrupted (because this one's lease lapsed, say while the machine was
// suspended) takes this process's end, since it is the one that ran it.
// A deployment running in another live process is not this one's to end:
// that is a not-found error, so sharing a file corrupts no row.
func (d *DB) Finish(ctx context.Context, id int64, state nixdeploy.State, exitCode int, errText string) error {
	if !state.Final() {
		return fmt.Errorf("finish deployment %d: %s is not a final state", id, state)
	}
	res, err := d.sql.ExecContext(ctx, `UPDATE deployments SET state = ?, ended_at = ?, exit_code = ?, error = ?
		WHERE id = ? AND (state IN ('queued', 'awaiting-approval', 'running') OR (state = 'interrupted' AND owner = ?))
		AND (state <> 'running' OR owner = ? OR NOT `+liveOwner("deployments.owner")+`)`,
		state, d.now(), exitCode, errText, id, d.owner.ID, d.owner.ID, d.now())
	if err != nil {
		return fmt.Errorf("finish deployment %d: %w", id, err)
	}
	return checkOne(res, fmt.Sprintf("deployment %d (not found or already finished)", id))
}

// EndUnstarted ends a deployment that has not started (queued or awaiting
// approval) in state, with errText. One that started or ended meanwhile
// is a not-found error and is not changed: of a cancel and a start, only
// the first is recorded.
func (d *DB) EndUnstarted(ctx context.Context, id int64, state nixdeploy.State, errText string) error {
	if !state.Final() {
		return fmt.Errorf("end deployment %d: %s is not a final state", id, state)
	}
	res, err := d.sql.ExecContext(ctx, `UPDATE deployments SET state = ?, ended_at = ?, error = ?
		WHERE id = ? AND state IN ('queued', 'awaiting-approval')`, state, d.now(), errText, id)
	if err != nil {
		return fmt.Errorf("end deployment %d: %w", id, err)
	}
	return checkOne(res, fmt.Sprintf("deployment %d (not found, started or already finished)", id))
}

// SetMessage records where a deployment's Slack status message is.
func (d *DB) SetMessage(ctx context.Context, id int64, channel, ts string) error {
	res, err := d.sql.ExecContext(ctx, `UPDATE deployments SET channel = ?, message_ts = ? WHERE id = ?`, channel, ts, id)
	if err != nil {
		return fmt.Errorf("set message of deployment %d: %w", id, err)
	}
	return checkOne(res, fmt.Sprintf("deployment %d", id))
}

func checkOne(res sql.Result, what string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return nil
}

func (d *DB) recoverInterrupted(ctx context.Context) ([]nixdeploy.Deployment, error) {
	var out []nixdeploy.Deployment
	err := d.tx(ctx, func(tx *sql.Tx) error {
		// In flight under a lapsed owner; or approved (no pending
		// approval left) but never started by a lapsed owner, which would
		// otherwise wait for ever: nothing re-offers an approved request.
		rows, err := tx.QueryContext(ctx, `SELECT `+deploymentCols+` FROM deployments
			WHERE (state IN ('queued', 'running') OR (state = 'awaiting-approval'
				AND NOT EXISTS (SELECT 1 FROM approvals a WHERE a.deployment_id = deployments.id AND a.state = 'pending')))
			AND NOT `+liveOwner("deployments.owner")+`
			AND NOT EXISTS (SELECT 1 FROM remote_steps r WHERE r.deployment_id = deployments.id AND r.state = 'running')
			ORDER BY id`, d.now())
		if err != nil {
			return err
		}
		for rows.Next() {
			dep, err := scanDeployment(rows)
			if err != nil {
				rows.Close()
				return err
			}
			out = append(out, dep)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		now := d.now()
		for i := range out {
			why := "nixdeploy restarted while this deployment was in flight"
			if out[i].State == nixdeploy.StateAwaiting {
				why = "nixdeploy restarted after this request was approved and before it started, so it did not run; request it again"
			}
			if _, err := tx.ExecContext(ctx, `UPDATE deployments SET state = 'interrupted', ended_at = ?,
				error = CASE WHEN error = '' THEN ? ELSE error END
				WHERE id = ?`, now, why, out[i].ID); err != nil {
				return err
			}
			out[i].Error = why
			out[i].State = nixdeploy.StateInterrupted
			out[i].EndedAt = fromNanos(now)
		}
		return nil
	})
	return out, err
}

// RecordStep stores the result of one step.
func (d *DB) RecordStep(ctx context.Context, deploymentID int64, s nixdeploy.StepResult) error {
	_, err := d.sql.ExecContext(ctx, `INSERT INTO steps
		(deployment_id, host, name, started_at, ended_at, exit_code, error, before_path, after_path)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		deploymentID, s.Host, s.Name, nanos(s.StartedAt), nanos(s.EndedAt), s.ExitCode, s.Error, s.Before, s.After)
	if err != nil {
		return fmt.Errorf("record step %s of deployment %d: %w", s.Name, deploymentID, err)
	}
	return nil
}

// Steps returns a deployment's steps in the order they were recorded.
func (d *DB) Steps(ctx context.Context, deploymentID int64) ([]nixdeploy.StepResult, error) {
	rows, err := d.query(ctx, `SELECT host, name, started_at, ended_at, exit_code, error, before_path, after_path
		FROM steps WHERE deployment_id = ? ORDER BY id`, deploymentID)
	if err != nil {
		return nil, fmt.Errorf("steps of deployment %d: %w", deploymentID, err)
	}
	defer rows.Close()
	var out []nixdeploy.StepResult
	for rows.Next() {
		var s nixdeploy.StepResult
		var st, en int64
		if err := rows.Scan(&s.Host, &s.Name, &st, &en, &s.ExitCode, &s.Error, &s.Before, &s.After); err != nil {
			return nil, err
		}
		s.StartedAt, s.EndedAt = fromNanos(st), fromNanos(en)
		out = append(out, s)
	}
	return out, rows.Err()
}

// CurrentSystem returns the newest known /run/current-system of host, as
// recorded by a verify step, and when it was seen.
func (d *DB) CurrentSystem(ctx context.Context, host string) (string, time.Time, error) {
	var path string
	var at int64
	err := d.queryRow(ctx, `SELECT after_path, ended_at FROM steps
		WHERE host = ? AND after_path != '' ORDER BY id DESC LIMIT 1`, host).Scan(&path, &at)
	if err != nil {
		return "", time.Time{}, notFound(err, "current system of "+host)
	}
	return path, fromNanos(at), nil
}
