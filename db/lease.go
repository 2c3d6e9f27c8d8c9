package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// LeaseTTL is how long an owner's lease lasts without renewal; the lease
// is renewed every LeaseTTL/3 while the DB is open. A process that died
// holds its hosts and deployments at most this long.
var LeaseTTL = 30 * time.Second

// Owner is the process that holds a DB open: it owns the deployments it
// created and the host claims it took.
type Owner struct {
	ID       string
	PID      int
	Hostname string
	Started  time.Time
}

func newOwner(now time.Time) Owner {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	pid := os.Getpid()
	return Owner{ID: fmt.Sprintf("%s:%d:%d", host, pid, now.UnixNano()), PID: pid, Hostname: host, Started: now.UTC()}
}

// Owner is this process as the database knows it.
func (d *DB) Owner() Owner { return d.owner }

// processStart is when this process started, near enough: an owner with
// this host and pid registered before it was an earlier process.
var processStart = time.Now()

// register inserts this process's owner row with a fresh lease, and ends
// the lease of every owner on this machine that is certainly dead: one
// whose pid no longer runs (a crash, a SIGKILL), and an earlier process
// with this very pid (as after a container restart, where nixdeploy is
// pid 1 again). Their deployments are then recovered now rather than
// after LeaseTTL.
func (d *DB) register(ctx context.Context) error {
	o := d.owner
	return d.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE owners SET lease_until = 0 WHERE hostname = ? AND pid = ? AND started_at < ?`,
			o.Hostname, o.PID, processStart.UnixNano()); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT id, pid FROM owners WHERE hostname = ? AND pid <> ? AND lease_until > ?`,
			o.Hostname, o.PID, d.now())
		if err != nil {
			return err
		}
		var dead []string
		for rows.Next() {
			var id string
			var pid int
			if err := rows.Scan(&id, &pid); err != nil {
				rows.Close()
				return err
			}
			if !processAlive(pid) {
				dead = append(dead, id)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, id := range dead {
			if _, err := tx.ExecContext(ctx, `UPDATE owners SET lease_until = 0 WHERE id = ?`, id); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `INSERT OR REPLACE INTO owners (id, pid, hostname, started_at, lease_until) VALUES (?, ?, ?, ?, ?)`,
			o.ID, o.PID, o.Hostname, nanos(o.Started), d.now()+int64(LeaseTTL))
		return err
	})
}

// renew extends this owner's lease, registering it again if its row is
// gone (a database restored under a running process).
func (d *DB) renew(ctx context.Context) error {
	o := d.owner
	_, err := d.sql.ExecContext(ctx, `INSERT INTO owners (id, pid, hostname, started_at, lease_until) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET lease_until = excluded.lease_until`,
		o.ID, o.PID, o.Hostname, nanos(o.Started), d.now()+int64(LeaseTTL))
	return err
}

// renewLoop renews the lease until stop is closed.
func (d *DB) renewLoop(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), LeaseTTL/3)
			err := d.renew(ctx)
			d.leaseErr.Store(&err)
			cancel()
		}
	}
}

// release ends this owner's lease and drops its host claims, at Close.
func (d *DB) release(ctx context.Context) error {
	return d.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM host_claims WHERE owner = ?`, d.owner.ID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE owners SET lease_until = 0 WHERE id = ?`, d.owner.ID)
		return err
	})
}

// liveOwner is a condition on an owner column named col: its lease runs.
func liveOwner(col string) string {
	return `EXISTS (SELECT 1 FROM owners o WHERE o.id = ` + col + ` AND o.lease_until > ?)`
}

// ClaimHosts claims every host for deployment id (0 while it is being
// created) on behalf of this process, or none of them, in one
// transaction. A host claimed by another deployment whose owner's lease
// runs is an error wrapping nixdeploy.ErrHostBusy naming it; a claim whose
// owner's lease lapsed is taken over. Claiming again for the same
// deployment (or moving a claim of 0 to its id) is allowed.
func (d *DB) ClaimHosts(ctx context.Context, id int64, hosts []string) error {
	return d.tx(ctx, func(tx *sql.Tx) error {
		now := d.now()
		for _, h := range hosts {
			var holder int64
			var owner string
			err := tx.QueryRowContext(ctx, `SELECT c.deployment_id, c.owner FROM host_claims c
				WHERE c.host = ? AND `+liveOwner("c.owner"), h, now).Scan(&holder, &owner)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				// No live claim; a step a dead process left running on
				// the runner still holds the host (issue 14).
				if busy, rerr := remoteBusy(ctx, tx, h, id); rerr != nil {
					return fmt.Errorf("claim %s: %w", h, rerr)
				} else if busy != 0 {
					return fmt.Errorf("%w: %s: a step of deployment %d may still be running on the runner", nixdeploy.ErrHostBusy, h, busy)
				}
				continue
			case err != nil:
				return fmt.Errorf("claim %s: %w", h, err)
			case owner == d.owner.ID && (holder == id || holder == 0):
				continue
			case holder == 0:
				return fmt.Errorf("%w: %s is taken by a deployment that is starting (in %s)", nixdeploy.ErrHostBusy, h, ownerName(owner))
			default:
				return fmt.Errorf("%w: %s is being deployed by deployment %d", nixdeploy.ErrHostBusy, h, holder)
			}
		}
		for _, h := range hosts {
			if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO host_claims (host, deployment_id, owner, claimed_at) VALUES (?, ?, ?, ?)`,
				h, id, d.owner.ID, now); err != nil {
				return fmt.Errorf("claim %s: %w", h, err)
			}
		}
		return nil
	})
}

// ReleaseHosts drops this process's claims on hosts for deployment id.
func (d *DB) ReleaseHosts(ctx context.Context, id int64, hosts []string) error {
	for _, h := range hosts {
		if _, err := d.sql.ExecContext(ctx, `DELETE FROM host_claims WHERE host = ? AND owner = ? AND deployment_id IN (?, 0)`,
			h, d.owner.ID, id); err != nil {
			return fmt.Errorf("release %s: %w", h, err)
		}
	}
	return nil
}

// HostClaim is who holds a host: a live claim's deployment (0 while it is
// being created) and its owner as people read it ("nixdeploy pid 7 on
// fly-1").
func (d *DB) HostClaim(ctx context.Context, host string) (id int64, owner string, ok bool, err error) {
	err = d.queryRow(ctx, `SELECT c.deployment_id, c.owner FROM host_claims c WHERE c.host = ? AND `+liveOwner("c.owner"),
		host, d.now()).Scan(&id, &owner)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, "", false, nil
	}
	if err != nil {
		return 0, "", false, fmt.Errorf("claim of %s: %w", host, err)
	}
	return id, ownerName(owner), true, nil
}

// ownerName is an owner id as people read it: "pid 123 on host".
func ownerName(id string) string {
	parts := strings.Split(id, ":")
	if len(parts) < 3 {
		return "another nixdeploy"
	}
	return fmt.Sprintf("nixdeploy pid %s on %s", parts[len(parts)-2], strings.Join(parts[:len(parts)-2], ":"))
}
