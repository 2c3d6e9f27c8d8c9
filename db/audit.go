package db

import (
	"context"
	"fmt"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// Audit appends an audit event. Detail must never hold secret material.
func (d *DB) Audit(ctx context.Context, e nixdeploy.AuditEvent) error {
	if e.Time.IsZero() {
		e.Time = d.Now()
	}
	_, err := d.sql.ExecContext(ctx, `INSERT INTO audit_events (ts, actor, kind, deployment_id, detail) VALUES (?, ?, ?, ?, ?)`,
		nanos(e.Time), e.Actor, e.Kind, e.DeploymentID, e.Detail)
	if err != nil {
		return fmt.Errorf("audit %s by %s: %w", e.Kind, e.Actor, err)
	}
	return nil
}

// AuditTrail lists audit events, oldest first; deploymentID 0 lists all.
func (d *DB) AuditTrail(ctx context.Context, deploymentID int64) ([]nixdeploy.AuditEvent, error) {
	q := `SELECT id, ts, actor, kind, deployment_id, detail FROM audit_events`
	var args []any
	if deploymentID != 0 {
		q += ` WHERE deployment_id = ?`
		args = append(args, deploymentID)
	}
	rows, err := d.query(ctx, q+` ORDER BY id`, args...)
	if err != nil {
		return nil, fmt.Errorf("audit trail: %w", err)
	}
	defer rows.Close()
	var out []nixdeploy.AuditEvent
	for rows.Next() {
		var e nixdeploy.AuditEvent
		var ts int64
		if err := rows.Scan(&e.ID, &ts, &e.Actor, &e.Kind, &e.DeploymentID, &e.Detail); err != nil {
			return nil, err
		}
		e.Time = fromNanos(ts)
		out = append(out, e)
	}
	return out, rows.Err()
}

// FirstSeen records a Slack event_id and reports whether this is the first
// time it was seen. Because the record is in SQLite, a retry that arrives
// after a restart is still recognised.
func (d *DB) FirstSeen(ctx context.Context, eventID string) (bool, error) {
	res, err := d.sql.ExecContext(ctx, `INSERT OR IGNORE INTO slack_events (event_id, received_at) VALUES (?, ?)`, eventID, d.now())
	if err != nil {
		return false, fmt.Errorf("record event %s: %w", eventID, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// PruneEvents forgets event ids received before cutoff. Slack retries
// within minutes, so a day of history is plenty.
func (d *DB) PruneEvents(ctx context.Context, cutoff time.Time) (int64, error) {
	res, err := d.sql.ExecContext(ctx, `DELETE FROM slack_events WHERE received_at < ?`, nanos(cutoff))
	if err != nil {
		return 0, fmt.Errorf("prune events: %w", err)
	}
	return res.RowsAffected()
}
