package runs_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/db"
	"github.com/nixdeploy/nixdeploy/runs"
)

// fakeExec stands in for the deployer: it knows the hosts in known, fails
// with fail when set, and leaves the outcome on dep as the deployer does.
type fakeExec struct {
	known map[string]bool
	fail  error
	ran   int
}

func (f *fakeExec) Check(dep nixdeploy.Deployment) error {
	for _, h := range dep.Hosts {
		if !f.known[h] {
			return nixdeploy.ErrUnknownHost
		}
	}
	return nil
}

func (f *fakeExec) Run(_ context.Context, dep *nixdeploy.Deployment, _ ...nixdeploy.Sink) (*nixdeploy.Report, error) {
	f.ran++
	rep := &nixdeploy.Report{DeploymentID: dep.ID, State: nixdeploy.StateSucceeded}
	if f.fail != nil {
		rep.State, dep.ExitCode, dep.Error = nixdeploy.StateFailed, 3, "step x failed (redacted)"
		return rep, f.fail
	}
	return rep, nil
}

func open(t *testing.T, path string) *db.DB {
	t.Helper()
	d, _, err := db.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// Run stores the deployment, starts it, and records the executor's end
// (its exit code and redacted text); an unknown or busy host stores
// nothing and runs nothing.
func TestRunOwnsTheRow(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "x.db")
	store := open(t, path)
	exec := &fakeExec{known: map[string]bool{"ganon": true}, fail: errors.New("raw chain: with output")}
	life := runs.New(store, exec)
	dep := &nixdeploy.Deployment{Hosts: []string{"ganon"}, Action: nixdeploy.ActionSwitch, Requester: "me"}
	if _, err := life.Run(ctx, dep); err == nil {
		t.Fatal("a failed run returned no error")
	}
	got, err := store.Deployment(ctx, dep.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != nixdeploy.StateFailed || got.ExitCode != 3 || got.Error != "step x failed (redacted)" || got.StartedAt.IsZero() {
		t.Errorf("stored %+v, want failed, exit 3, the executor's redacted text, started", got)
	}

	if _, err := life.Run(ctx, &nixdeploy.Deployment{Hosts: []string{"nope"}, Action: nixdeploy.ActionSwitch}); !errors.Is(err, nixdeploy.ErrUnknownHost) {
		t.Errorf("unknown host: %v", err)
	}
	// Another process on the same file holds ganon.
	if err := open(t, path).ClaimHosts(ctx, 77, []string{"ganon"}); err != nil {
		t.Fatal(err)
	}
	if _, err := life.Run(ctx, &nixdeploy.Deployment{Hosts: []string{"ganon"}, Action: nixdeploy.ActionSwitch}); !errors.Is(err, nixdeploy.ErrHostBusy) {
		t.Errorf("busy host: %v", err)
	}
	if deps, _ := store.Deployments(ctx, "", 10); len(deps) != 1 {
		t.Errorf("%d deployments stored, want only the one that ran", len(deps))
	}
	if exec.ran != 1 {
		t.Errorf("executor ran %d times, want 1", exec.ran)
	}
}

// Of a start and a cancel only the first is recorded.
func TestStartAndCancelHaveOneOutcome(t *testing.T) {
	ctx := t.Context()
	store := open(t, filepath.Join(t.TempDir(), "x.db"))
	life := runs.New(store, &fakeExec{})
	first := nixdeploy.Deployment{Hosts: []string{"ganon"}, Action: nixdeploy.ActionInstall, Source: nixdeploy.SourceSlack, State: nixdeploy.StateAwaiting}
	second := first
	for _, d := range []*nixdeploy.Deployment{&first, &second} {
		if err := store.CreateDeployment(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := life.Cancel(ctx, first.ID, "U1"); !ok || err != nil {
		t.Fatalf("cancel before start: %v %v", ok, err)
	}
	if cur, err := life.Start(ctx, first.ID); !errors.Is(err, runs.ErrNotStarted) || cur.State != nixdeploy.StateCancelled {
		t.Errorf("start after cancel: %v (%s), want ErrNotStarted, cancelled", err, cur.State)
	}
	if _, err := life.Start(ctx, second.ID); err != nil {
		t.Fatal(err)
	}
	if ok, err := life.Cancel(ctx, second.ID, "U1"); ok || err != nil {
		t.Errorf("cancel after start ended the row: %v %v", ok, err)
	}
	if got, _ := store.Deployment(ctx, second.ID); got.State != nixdeploy.StateRunning {
		t.Errorf("started deployment is %s after a late cancel, want running", got.State)
	}
}
