package db_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/db"
)

// Two processes share one file: opening it a second time must not touch
// the first one's deployment in flight, and the first one's end is the one
// recorded.
func TestOpenLeavesALiveOwnersDeploymentsAlone(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "shared.db")
	serve, _ := mustOpen(t, path)
	dep := newDeployment(t, serve, "rk1-node1")
	if err := serve.SetState(ctx, dep.ID, nixdeploy.StateRunning); err != nil {
		t.Fatal(err)
	}
	console, interrupted := mustOpen(t, path)
	if len(interrupted) != 0 {
		t.Fatalf("a second process marked %d deployments of a live one interrupted: %+v", len(interrupted), interrupted)
	}
	if got, _ := console.Deployment(ctx, dep.ID); got.State != nixdeploy.StateRunning {
		t.Fatalf("deployment after the second Open: %s, want running", got.State)
	}
	if err := console.Finish(ctx, dep.ID, nixdeploy.StateCancelled, 0, "cancelled by U2"); !errors.Is(err, nixdeploy.ErrNotFound) {
		t.Fatalf("another process ended a running deployment it does not own: err = %v", err)
	}
	if err := serve.Finish(ctx, dep.ID, nixdeploy.StateSucceeded, 0, ""); err != nil {
		t.Fatalf("the running process's Finish: %v", err)
	}
	if got, _ := console.Deployment(ctx, dep.ID); got.State != nixdeploy.StateSucceeded {
		t.Fatalf("recorded %s, want succeeded", got.State)
	}
}

// A lapsed lease (the owner died without Close) frees its deployments for
// recovery and its hosts for another process.
func TestLapsedOwnerIsRecoveredAndLosesItsClaims(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "shared.db")
	dead, _ := mustOpen(t, path)
	dep := newDeployment(t, dead, "rk1-node1")
	if err := dead.SetState(ctx, dep.ID, nixdeploy.StateRunning); err != nil {
		t.Fatal(err)
	}
	if err := dead.ClaimHosts(ctx, dep.ID, []string{"rk1-node1"}); err != nil {
		t.Fatal(err)
	}
	live, _ := mustOpen(t, path)
	other := newDeployment(t, live, "rk1-node1")
	err := live.ClaimHosts(ctx, other.ID, []string{"rk1-node1"})
	if !errors.Is(err, nixdeploy.ErrHostBusy) || !strings.Contains(err.Error(), "deployment 1") {
		t.Fatalf("claim of a host a live process holds: %v, want busy naming deployment 1", err)
	}
	// The first process's clock says its lease ran out: it stopped
	// renewing (a crash) long ago.
	later := time.Now().Add(2 * db.LeaseTTL)
	live.Now = func() time.Time { return later }
	if err := live.Renew(); err != nil { // the live process keeps renewing
		t.Fatal(err)
	}
	if err := live.ClaimHosts(ctx, other.ID, []string{"rk1-node1"}); err != nil {
		t.Fatalf("claim of a host whose holder's lease lapsed: %v", err)
	}
	if err := live.SetState(ctx, other.ID, nixdeploy.StateRunning); err != nil {
		t.Fatal(err)
	}
	_, interrupted := openAt(t, path, later)
	if len(interrupted) != 1 || interrupted[0].ID != dep.ID {
		t.Fatalf("interrupted = %+v, want the lapsed owner's deployment %d only", interrupted, dep.ID)
	}
}

// A request approved but never started when its process died is not left
// "awaiting approval" for ever: the next Open ends it with a sentence.
func TestApprovedButNotStartedIsRecovered(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "x.db")
	d, _ := mustOpen(t, path)
	dep := nixdeploy.Deployment{Hosts: []string{"ganon"}, Action: nixdeploy.ActionInstall, Requester: "U1",
		Source: nixdeploy.SourceSlack, State: nixdeploy.StateAwaiting}
	if err := d.CreateDeployment(ctx, &dep); err != nil {
		t.Fatal(err)
	}
	a := nixdeploy.Approval{DeploymentID: dep.ID, Fingerprint: "fp", Requester: "U1", ExpiresAt: time.Now().Add(time.Hour)}
	if err := d.CreateApproval(ctx, &a); err != nil {
		t.Fatal(err)
	}
	if ok, err := d.DecideApproval(ctx, a.ID, nixdeploy.ApprovalApproved, "U2"); err != nil || !ok {
		t.Fatalf("approve: %v %v", ok, err)
	}
	d.Close() // the process dies here, before the run starts
	d2, interrupted := mustOpen(t, path)
	if len(interrupted) != 1 || interrupted[0].ID != dep.ID {
		t.Fatalf("interrupted = %+v, want the approved deployment %d", interrupted, dep.ID)
	}
	got, err := d2.Deployment(ctx, dep.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != nixdeploy.StateInterrupted || !strings.Contains(got.Error, "request it again") {
		t.Fatalf("after restart: %s %q, want interrupted with a sentence", got.State, got.Error)
	}
}

func openAt(t *testing.T, path string, now time.Time) (*db.DB, []nixdeploy.Deployment) {
	t.Helper()
	restore := db.SetOpenClock(func() time.Time { return now })
	defer restore()
	d, interrupted, err := db.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, interrupted
}

// A renewal registers the owner again when its row is gone, so its claims
// hold again instead of lapsing for good.
func TestRenewRegistersAgain(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "shared.db")
	a, _ := mustOpen(t, path)
	b, _ := mustOpen(t, path)
	if err := a.ClaimHosts(ctx, 1, []string{"ganon"}); err != nil {
		t.Fatal(err)
	}
	if err := a.DropOwner(); err != nil {
		t.Fatal(err)
	}
	if _, _, held, err := b.HostClaim(ctx, "ganon"); err != nil || held {
		t.Fatalf("claim of an owner with no row: held %v, %v; want lapsed", held, err)
	}
	if err := a.Renew(); err != nil {
		t.Fatal(err)
	}
	if err := b.ClaimHosts(ctx, 2, []string{"ganon"}); !errors.Is(err, nixdeploy.ErrHostBusy) {
		t.Fatalf("claim after the owner renewed: %v, want busy", err)
	}
}
