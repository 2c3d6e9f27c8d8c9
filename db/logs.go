package db

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/nixdeploy/nixdeploy"
)

// logBatchRows bounds the rows per INSERT statement: SQLite limits bound
// parameters per statement (32766 in modernc's build), and 7 columns x 500
// rows stays far below it while amortising statement overhead.
const logBatchRows = 500

func logInsertSQL(rows int) string {
	return `INSERT INTO log_lines (deployment_id, seq, ts, host, step, stream, text) VALUES (?, ?, ?, ?, ?, ?, ?)` +
		strings.Repeat(`, (?, ?, ?, ?, ?, ?, ?)`, rows-1)
}

// logInsert returns the prepared statement for a full batch. Parsing a
// 500-row INSERT costs more than executing it, so it is prepared once.
func (d *DB) logInsert(ctx context.Context) (*sql.Stmt, error) {
	d.logStmtMu.Lock()
	defer d.logStmtMu.Unlock()
	if d.logStmt == nil {
		st, err := d.sql.PrepareContext(ctx, logInsertSQL(logBatchRows))
		if err != nil {
			return nil, err
		}
		d.logStmt = st
	}
	return d.logStmt, nil
}

// AppendLogs stores lines of a deployment's log in one transaction. Seq
// numbers are the caller's and must be unique within the deployment; a
// repeat is an error rather than a silent overwrite.
func (d *DB) AppendLogs(ctx context.Context, deploymentID int64, lines []nixdeploy.LogLine) error {
	if len(lines) == 0 {
		return nil
	}
	full, err := d.logInsert(ctx)
	if err != nil {
		return fmt.Errorf("append log lines: %w", err)
	}
	args := make([]any, 0, 7*logBatchRows)
	err = d.tx(ctx, func(tx *sql.Tx) error {
		for start := 0; start < len(lines); start += logBatchRows {
			chunk := lines[start:min(start+logBatchRows, len(lines))]
			args = args[:0]
			for _, l := range chunk {
				args = append(args, deploymentID, l.Seq, nanos(l.Time), l.Host, l.Step, string(l.Stream), l.Text)
			}
			var err error
			if len(chunk) == logBatchRows {
				_, err = tx.StmtContext(ctx, full).ExecContext(ctx, args...)
			} else {
				_, err = tx.ExecContext(ctx, logInsertSQL(len(chunk)), args...)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("append %d log lines to deployment %d: %w", len(lines), deploymentID, err)
	}
	return nil
}

// EachLog calls fn for every stored line of a deployment, in order, without
// loading the whole log into memory.
func (d *DB) EachLog(ctx context.Context, deploymentID int64, fn func(nixdeploy.LogLine) error) error {
	rows, err := d.sql.QueryContext(ctx, `SELECT seq, ts, host, step, stream, text FROM log_lines
		WHERE deployment_id = ? ORDER BY seq`, deploymentID)
	if err != nil {
		return fmt.Errorf("read log of deployment %d: %w", deploymentID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var l nixdeploy.LogLine
		var ts int64
		if err := rows.Scan(&l.Seq, &ts, &l.Host, &l.Step, &l.Stream, &l.Text); err != nil {
			return err
		}
		l.Time = fromNanos(ts)
		if err := fn(l); err != nil {
			return err
		}
	}
	return rows.Err()
}

// LogCount returns how many lines a deployment has stored.
func (d *DB) LogCount(ctx context.Context, deploymentID int64) (int64, error) {
	var n int64
	err := d.sql.QueryRowContext(ctx, `SELECT count(*) FROM log_lines WHERE deployment_id = ?`, deploymentID).Scan(&n)
	return n, err
}
