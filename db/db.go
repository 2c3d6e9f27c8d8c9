// Package db is nixdeploy's SQLite store, through the pure-Go
// modernc.org/sqlite driver. It owns the schema (embedded migrations applied
// in name order) and every query; other packages see only root types.
package db

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nixdeploy/nixdeploy"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// maxIdleConns is how many pooled connections stay open between queries.
const maxIdleConns = 8

// DefaultPath is used when NIXDEPLOY_DB is unset.
const DefaultPath = "./nixdeploy.db"

// PathFromEnv returns $NIXDEPLOY_DB, or DefaultPath.
func PathFromEnv() string {
	if p := os.Getenv("NIXDEPLOY_DB"); p != "" {
		return p
	}
	return DefaultPath
}

// DB is an open nixdeploy database.
type DB struct {
	sql *sql.DB

	// stmts caches prepared statements by their text: modernc's SQLite
	// takes longer to parse a statement than to run a small query.
	stmts sync.Map // string → *sql.Stmt

	// Now is the clock used for timestamps the store sets itself.
	Now func() time.Time

	// leaseErr is the last lease renewal's error (nil once one succeeds):
	// while it fails, another process may take this one's hosts when the
	// lease lapses, so Ping reports it and /readyz fails.
	leaseErr atomic.Pointer[error]

	owner     Owner
	stopLease chan struct{}
	leaseDone chan struct{}
}

// cacheKiB bounds each connection's page cache (SQLite's default is
// 2,000 KiB). The pool keeps up to maxIdleConns connections, and a
// connection's cache fills, up to that bound, as it writes or reads a log.
// The tables the bot looks things up in are small, and the logs are
// appended and read in order, once, so a larger cache saves no reads (the
// OS caches the file too): 512 KiB took 3 MiB off bench row 1's peak RSS
// with no loss of throughput (10 runs each, alternating), and row 3's
// status reads did not move.
const cacheKiB = 512

// dsn puts the pragmas in the connection string so every pooled connection
// gets them; a one-off PRAGMA would reach only one connection.
func dsn(path string) string {
	q := url.Values{}
	for _, p := range []string{"busy_timeout(10000)", "journal_mode(wal)", "foreign_keys(1)", "synchronous(normal)", fmt.Sprintf("cache_size(-%d)", cacheKiB)} {
		q.Add("_pragma", p)
	}
	// BEGIN IMMEDIATE takes the write lock up front, so two writers wait on
	// busy_timeout instead of failing with SQLITE_BUSY on lock upgrade.
	q.Set("_txlock", "immediate")
	return "file:" + path + "?" + q.Encode()
}

// openClock is the clock Open gives a DB; tests move it.
var openClock = time.Now

// Open opens (creating if needed) the database at path, applies pending
// migrations, registers this process as an owner with a lease it renews
// until Close, and marks as interrupted the deployments left in flight by
// a process whose lease has lapsed (never those of a live process sharing
// the file). It returns those deployments so the caller can tell the
// people who were watching them.
func Open(ctx context.Context, path string) (*DB, []nixdeploy.Deployment, error) {
	sdb, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		return nil, nil, fmt.Errorf("open database %s: %w", path, err)
	}
	// database/sql keeps two idle connections by default; with a few
	// handlers and a deployment at once the rest were opened and closed
	// per query, each paying for the pragmas and for preparing its
	// statements again. Idle SQLite connections cost little.
	sdb.SetMaxIdleConns(maxIdleConns)
	d := &DB{sql: sdb, Now: openClock, owner: newOwner(openClock())}
	if err := d.migrate(ctx); err != nil {
		sdb.Close()
		return nil, nil, fmt.Errorf("migrate database %s: %w", path, err)
	}
	if err := d.register(ctx); err != nil {
		sdb.Close()
		return nil, nil, fmt.Errorf("register with database %s: %w", path, err)
	}
	d.stopLease, d.leaseDone = make(chan struct{}), make(chan struct{})
	go d.renewLoop(d.stopLease, d.leaseDone)
	interrupted, err := d.recoverInterrupted(ctx)
	if err != nil {
		d.Close()
		return nil, nil, fmt.Errorf("recover database %s: %w", path, err)
	}
	return d, interrupted, nil
}

// Close ends this process's lease and claims and closes the database.
func (d *DB) Close() error {
	if d.stopLease != nil {
		close(d.stopLease)
		<-d.leaseDone
		d.stopLease = nil
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = d.release(ctx) // a lapsed lease frees the same rows later
		cancel()
	}
	d.stmts.Range(func(_, st any) bool {
		st.(*sql.Stmt).Close()
		return true
	})
	return d.sql.Close()
}

// prepared returns the cached prepared statement for q, preparing it on
// first use. database/sql prepares it again on each pooled connection as
// needed.
func (d *DB) prepared(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := d.stmts.Load(q); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := d.sql.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if prev, loaded := d.stmts.LoadOrStore(q, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// query runs a read outside a transaction through the statement cache.
func (d *DB) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	st, err := d.prepared(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// queryRow is query for one row.
func (d *DB) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	st, err := d.prepared(ctx, q)
	if err != nil {
		// The same error, carried by a Row.
		return d.sql.QueryRowContext(ctx, q, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// Ping checks that the database answers.
// Ping checks the database answers and this process's lease is being
// renewed.
func (d *DB) Ping(ctx context.Context) error {
	if p := d.leaseErr.Load(); p != nil && *p != nil {
		return fmt.Errorf("renew the lease of this process: %w", *p)
	}
	return d.sql.PingContext(ctx)
}

func (d *DB) migrate(ctx context.Context) error {
	if _, err := d.sql.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		version := strings.TrimSuffix(strings.TrimPrefix(name, "migrations/"), ".sql")
		if err := d.apply(ctx, name, version); err != nil {
			return fmt.Errorf("migration %s: %w", version, err)
		}
	}
	return nil
}

func (d *DB) apply(ctx context.Context, name, version string) error {
	return d.tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		body, err := migrationFS.ReadFile(name)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, string(body)); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, version, d.now())
		return err
	})
}

// Migrations lists the applied migration versions, in order.
func (d *DB) Migrations(ctx context.Context) ([]string, error) {
	rows, err := d.sql.QueryContext(ctx, `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func (d *DB) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := d.sql.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func (d *DB) now() int64 { return d.Now().UnixNano() }

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// ErrNotFound is returned for a missing row; it wraps nixdeploy.ErrNotFound.
var ErrNotFound = fmt.Errorf("db: %w", nixdeploy.ErrNotFound)

func notFound(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return err
}
