package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// SetPaused persists a schedule's pause flag.
func (d *DB) SetPaused(ctx context.Context, name string, paused bool, by string) error {
	_, err := d.sql.ExecContext(ctx, `INSERT INTO schedule_state (name, paused, paused_by, changed_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, paused_by = excluded.paused_by, changed_at = excluded.changed_at`,
		name, paused, by, d.now())
	if err != nil {
		return fmt.Errorf("set schedule %s paused=%v: %w", name, paused, err)
	}
	return nil
}

// Schedule returns a schedule's state; a schedule never paused is not paused.
func (d *DB) Schedule(ctx context.Context, name string) (nixdeploy.ScheduleState, error) {
	s := nixdeploy.ScheduleState{Name: name}
	var at int64
	err := d.queryRow(ctx, `SELECT paused, paused_by, changed_at FROM schedule_state WHERE name = ?`, name).
		Scan(&s.Paused, &s.PausedBy, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return s, nil
	}
	s.ChangedAt = fromNanos(at)
	return s, err
}

// StartScheduleRun records the start of a run and sets r.ID.
func (d *DB) StartScheduleRun(ctx context.Context, r *nixdeploy.ScheduleRun) error {
	if r.StartedAt.IsZero() {
		r.StartedAt = d.Now().UTC()
	}
	if r.Outcome == "" {
		r.Outcome = "running"
	}
	res, err := d.sql.ExecContext(ctx, `INSERT INTO schedule_runs (schedule, trigger, scheduled_at, started_at, ended_at, outcome, detail)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, r.Schedule, r.Trigger, nanos(r.ScheduledAt), nanos(r.StartedAt), nanos(r.EndedAt), r.Outcome, r.Detail)
	if err != nil {
		return fmt.Errorf("start run of schedule %s: %w", r.Schedule, err)
	}
	r.ID, err = res.LastInsertId()
	return err
}

// RecordRunHost stores (or replaces) one host's outcome within a run.
func (d *DB) RecordRunHost(ctx context.Context, runID int64, h nixdeploy.ScheduleRunHost) error {
	_, err := d.sql.ExecContext(ctx, `INSERT INTO schedule_run_hosts (run_id, host, outcome, deployment_id, duration_ns, detail)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, host) DO UPDATE SET outcome = excluded.outcome,
		deployment_id = excluded.deployment_id, duration_ns = excluded.duration_ns, detail = excluded.detail`,
		runID, h.Host, h.Outcome, h.DeploymentID, int64(h.Duration), h.Detail)
	if err != nil {
		return fmt.Errorf("record host %s of run %d: %w", h.Host, runID, err)
	}
	return nil
}

// FinishScheduleRun records a run's outcome.
func (d *DB) FinishScheduleRun(ctx context.Context, runID int64, outcome nixdeploy.Outcome, detail string) error {
	res, err := d.sql.ExecContext(ctx, `UPDATE schedule_runs SET outcome = ?, detail = ?, ended_at = ? WHERE id = ?`,
		outcome, detail, d.now(), runID)
	if err != nil {
		return fmt.Errorf("finish run %d: %w", runID, err)
	}
	return checkOne(res, fmt.Sprintf("schedule run %d", runID))
}

// ScheduleRuns lists a schedule's newest runs first, with their hosts.
func (d *DB) ScheduleRuns(ctx context.Context, schedule string, limit int) ([]nixdeploy.ScheduleRun, error) {
	if limit <= 0 {
		limit = 10
	}
	rows, err := d.query(ctx, `SELECT id, schedule, trigger, scheduled_at, started_at, ended_at, outcome, detail
		FROM schedule_runs WHERE schedule = ? ORDER BY id DESC LIMIT ?`, schedule, limit)
	if err != nil {
		return nil, fmt.Errorf("runs of schedule %s: %w", schedule, err)
	}
	var out []nixdeploy.ScheduleRun
	for rows.Next() {
		var r nixdeploy.ScheduleRun
		var sch, st, en int64
		if err := rows.Scan(&r.ID, &r.Schedule, &r.Trigger, &sch, &st, &en, &r.Outcome, &r.Detail); err != nil {
			rows.Close()
			return nil, err
		}
		r.ScheduledAt, r.StartedAt, r.EndedAt = fromNanos(sch), fromNanos(st), fromNanos(en)
		out = append(out, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range out {
		if out[i].Hosts, err = d.runHosts(ctx, out[i].ID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (d *DB) runHosts(ctx context.Context, runID int64) ([]nixdeploy.ScheduleRunHost, error) {
	rows, err := d.query(ctx, `SELECT host, outcome, deployment_id, duration_ns, detail
		FROM schedule_run_hosts WHERE run_id = ? ORDER BY rowid`, runID)
	if err != nil {
		return nil, fmt.Errorf("hosts of run %d: %w", runID, err)
	}
	defer rows.Close()
	var out []nixdeploy.ScheduleRunHost
	for rows.Next() {
		var h nixdeploy.ScheduleRunHost
		var dur int64
		if err := rows.Scan(&h.Host, &h.Outcome, &h.DeploymentID, &dur, &h.Detail); err != nil {
			return nil, err
		}
		h.Duration = time.Duration(dur)
		out = append(out, h)
	}
	return out, rows.Err()
}

// LockHost takes a manual lock on host until l.ExpiresAt. An expired lock
// is replaced; a live one held by another holder is an ErrLocked error.
func (d *DB) LockHost(ctx context.Context, l nixdeploy.HostLock) error {
	if l.CreatedAt.IsZero() {
		l.CreatedAt = d.Now().UTC()
	}
	return d.tx(ctx, func(tx *sql.Tx) error {
		var holder string
		var exp int64
		err := tx.QueryRowContext(ctx, `SELECT holder, expires_at FROM host_locks WHERE host = ?`, l.Host).Scan(&holder, &exp)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		case exp > d.now() && holder != l.Holder:
			return fmt.Errorf("%s: %w by %s until %s", l.Host, nixdeploy.ErrLocked, holder, fromNanos(exp).Format(time.RFC3339))
		}
		_, err = tx.ExecContext(ctx, `INSERT OR REPLACE INTO host_locks (host, holder, reason, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`,
			l.Host, l.Holder, l.Reason, nanos(l.CreatedAt), nanos(l.ExpiresAt))
		return err
	})
}

// UnlockHost removes a host's manual lock. It reports whether one existed.
func (d *DB) UnlockHost(ctx context.Context, host string) (bool, error) {
	res, err := d.sql.ExecContext(ctx, `DELETE FROM host_locks WHERE host = ?`, host)
	if err != nil {
		return false, fmt.Errorf("unlock %s: %w", host, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// HostLockOf returns host's live manual lock, if any.
func (d *DB) HostLockOf(ctx context.Context, host string) (nixdeploy.HostLock, bool, error) {
	l := nixdeploy.HostLock{Host: host}
	var created, exp int64
	err := d.queryRow(ctx, `SELECT holder, reason, created_at, expires_at FROM host_locks WHERE host = ? AND expires_at > ?`,
		host, d.now()).Scan(&l.Holder, &l.Reason, &created, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return nixdeploy.HostLock{}, false, nil
	}
	if err != nil {
		return nixdeploy.HostLock{}, false, fmt.Errorf("lock of %s: %w", host, err)
	}
	l.CreatedAt, l.ExpiresAt = fromNanos(created), fromNanos(exp)
	return l, true, nil
}
