package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// LastReport returns the digest of the board the report schedule last
// posted, and when; ok is false before its first post.
func (d *DB) LastReport(ctx context.Context, schedule string) (digest string, at time.Time, ok bool, err error) {
	var n int64
	err = d.queryRow(ctx, `SELECT digest, posted_at FROM board_reports WHERE schedule = ?`, schedule).Scan(&digest, &n)
	if errors.Is(err, sql.ErrNoRows) {
		return "", time.Time{}, false, nil
	}
	if err != nil {
		return "", time.Time{}, false, fmt.Errorf("last report of %s: %w", schedule, err)
	}
	return digest, fromNanos(n), true, nil
}

// SetLastReport records the board the report schedule just posted.
func (d *DB) SetLastReport(ctx context.Context, schedule, digest string, at time.Time) error {
	_, err := d.sql.ExecContext(ctx, `INSERT INTO board_reports (schedule, digest, posted_at) VALUES (?, ?, ?)
		ON CONFLICT (schedule) DO UPDATE SET digest = excluded.digest, posted_at = excluded.posted_at`, schedule, digest, nanos(at))
	if err != nil {
		return fmt.Errorf("record report of %s: %w", schedule, err)
	}
	return nil
}
