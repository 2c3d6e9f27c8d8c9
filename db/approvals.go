package db

import (
	"context"
	"fmt"

	"github.com/nixdeploy/nixdeploy"
)

const approvalCols = `id, deployment_id, fingerprint, requester, channel, message_ts, state, decided_by, created_at, expires_at, decided_at`

func scanApproval(row interface{ Scan(...any) error }) (nixdeploy.Approval, error) {
	var a nixdeploy.Approval
	var created, expires, decided int64
	err := row.Scan(&a.ID, &a.DeploymentID, &a.Fingerprint, &a.Requester, &a.Channel, &a.MessageTS, &a.State,
		&a.DecidedBy, &created, &expires, &decided)
	a.CreatedAt, a.ExpiresAt, a.DecidedAt = fromNanos(created), fromNanos(expires), fromNanos(decided)
	return a, err
}

// CreateApproval stores a pending approval and sets its ID.
func (d *DB) CreateApproval(ctx context.Context, a *nixdeploy.Approval) error {
	if a.CreatedAt.IsZero() {
		a.CreatedAt = d.Now().UTC()
	}
	if a.State == "" {
		a.State = nixdeploy.ApprovalPending
	}
	res, err := d.sql.ExecContext(ctx, `INSERT INTO approvals
		(deployment_id, fingerprint, requester, channel, message_ts, state, decided_by, created_at, expires_at, decided_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.DeploymentID, a.Fingerprint, a.Requester, a.Channel, a.MessageTS, a.State, a.DecidedBy,
		nanos(a.CreatedAt), nanos(a.ExpiresAt), nanos(a.DecidedAt))
	if err != nil {
		return fmt.Errorf("create approval for deployment %d: %w", a.DeploymentID, err)
	}
	a.ID, err = res.LastInsertId()
	return err
}

// SetApprovalMessage records the Slack message that carries an approval.
func (d *DB) SetApprovalMessage(ctx context.Context, id int64, channel, ts string) error {
	res, err := d.sql.ExecContext(ctx, `UPDATE approvals SET channel = ?, message_ts = ? WHERE id = ?`, channel, ts, id)
	if err != nil {
		return fmt.Errorf("set approval %d message: %w", id, err)
	}
	return checkOne(res, fmt.Sprintf("approval %d", id))
}

// ApprovalByMessage finds the approval carried by a Slack message.
func (d *DB) ApprovalByMessage(ctx context.Context, channel, ts string) (nixdeploy.Approval, error) {
	row := d.queryRow(ctx, `SELECT `+approvalCols+` FROM approvals WHERE channel = ? AND message_ts = ?`, channel, ts)
	a, err := scanApproval(row)
	return a, notFound(err, "approval for message "+ts)
}

// Approval returns one approval.
func (d *DB) Approval(ctx context.Context, id int64) (nixdeploy.Approval, error) {
	a, err := scanApproval(d.queryRow(ctx, `SELECT `+approvalCols+` FROM approvals WHERE id = ?`, id))
	return a, notFound(err, fmt.Sprintf("approval %d", id))
}

// PendingApprovals lists approvals still waiting for a decision, oldest
// first. After a restart the bot re-arms their expiry from this list.
func (d *DB) PendingApprovals(ctx context.Context) ([]nixdeploy.Approval, error) {
	rows, err := d.query(ctx, `SELECT `+approvalCols+` FROM approvals WHERE state = 'pending' ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("pending approvals: %w", err)
	}
	defer rows.Close()
	var out []nixdeploy.Approval
	for rows.Next() {
		a, err := scanApproval(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// DecideApproval moves a pending approval to state. It reports false, and
// changes nothing, when the approval was no longer pending: two concurrent
// reactions cannot both win.
func (d *DB) DecideApproval(ctx context.Context, id int64, state nixdeploy.ApprovalState, by string) (bool, error) {
	res, err := d.sql.ExecContext(ctx, `UPDATE approvals SET state = ?, decided_by = ?, decided_at = ?
		WHERE id = ? AND state = 'pending'`, state, by, d.now(), id)
	if err != nil {
		return false, fmt.Errorf("decide approval %d: %w", id, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}
