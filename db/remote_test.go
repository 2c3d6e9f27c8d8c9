package db

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// TestRemoteStepRecords: the offsets a batch of lines reaches are stored
// with it; a running deployment with a running remote step is left for the
// reattach by the next Open (not interrupted), is reattachable and can be
// adopted once; its host cannot be claimed by another deployment.
func TestRemoteStepRecords(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "n.db")
	d, _, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	dep := &nixdeploy.Deployment{Hosts: []string{"node1"}, Action: nixdeploy.ActionSwitch, Requester: "t", Source: nixdeploy.SourceCLI}
	if err := d.CreateDeployment(ctx, dep); err != nil {
		t.Fatal(err)
	}
	if err := d.SetState(ctx, dep.ID, nixdeploy.StateRunning); err != nil {
		t.Fatal(err)
	}
	other := &nixdeploy.Deployment{Hosts: []string{"node2"}, Action: nixdeploy.ActionSwitch, Requester: "t", Source: nixdeploy.SourceCLI}
	if err := d.CreateDeployment(ctx, other); err != nil {
		t.Fatal(err)
	}
	if err := d.SetState(ctx, other.ID, nixdeploy.StateRunning); err != nil {
		t.Fatal(err)
	}
	rs := &nixdeploy.RemoteStep{DeploymentID: dep.ID, Host: "node1", Step: "nixos-rebuild", Runner: "local", Dir: "/tmp/tmp.x", Name: "nixos-rebuild",
		StartedAt: time.Now(), Timeout: time.Hour, Lock: &nixdeploy.Lock{Revision: "abc", URL: "u"}, Before: "/nix/store/a"}
	if err := d.StartRemoteStep(ctx, rs); err != nil {
		t.Fatal(err)
	}
	lines := []nixdeploy.LogLine{{Seq: 1, Host: "node1", Step: "nixos-rebuild", Stream: nixdeploy.StreamStdout, Text: "a"}}
	cur := []nixdeploy.LogCursor{{RemoteStep: rs.ID, Stream: nixdeploy.StreamStdout, Offset: 2}, {RemoteStep: rs.ID, Stream: nixdeploy.StreamStderr, Offset: 7}}
	if err := d.AppendLogsAt(ctx, dep.ID, lines, cur); err != nil {
		t.Fatal(err)
	}
	// A batch that fails stores neither its lines nor its offsets.
	bad := []nixdeploy.LogCursor{{RemoteStep: rs.ID, Stream: nixdeploy.StreamStdout, Offset: 99}}
	if err := d.AppendLogsAt(ctx, dep.ID, lines, bad); err == nil {
		t.Fatal("a repeated seq was stored")
	}
	if err := d.ClaimHosts(ctx, other.ID, []string{"node1"}); !errors.Is(err, nixdeploy.ErrHostBusy) {
		t.Errorf("claim of a host with a running remote step: %v, want busy", err)
	}
	// The process dies (its lease lapses at Close here).
	d.Close()

	d2, interrupted, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if len(interrupted) != 1 || interrupted[0].ID != other.ID {
		t.Fatalf("interrupted %+v, want only deployment %d (no remote step)", interrupted, other.ID)
	}
	deps, err := d2.Reattachable(ctx)
	if err != nil || len(deps) != 1 || deps[0].ID != dep.ID {
		t.Fatalf("reattachable %+v, %v", deps, err)
	}
	got, err := d2.RemoteSteps(ctx, dep.ID, nixdeploy.RemoteRunning)
	if err != nil || len(got) != 1 {
		t.Fatalf("running steps %+v, %v", got, err)
	}
	g := got[0]
	if g.OutOffset != 2 || g.ErrOffset != 7 || g.Lock == nil || g.Lock.Revision != "abc" || g.Before != "/nix/store/a" || g.Timeout != time.Hour {
		t.Errorf("stored step %+v", g)
	}
	if n, err := d2.LastLogSeq(ctx, dep.ID); err != nil || n != 1 {
		t.Errorf("last seq %d, %v", n, err)
	}
	if err := d2.Adopt(ctx, dep.ID); err != nil {
		t.Fatal(err)
	}
	if err := d2.Adopt(ctx, dep.ID); err == nil {
		t.Error("adopted twice: the owner is alive now")
	}
	if err := d2.EndRemoteStep(ctx, g.ID, nixdeploy.RemoteEnded, 0); err != nil {
		t.Fatal(err)
	}
	if err := d2.Finish(ctx, dep.ID, nixdeploy.StateSucceeded, 0, ""); err != nil {
		t.Fatalf("the adopter cannot finish: %v", err)
	}
	if err := d2.ClaimHosts(ctx, other.ID, []string{"node1"}); err != nil {
		t.Errorf("claim once the step ended: %v", err)
	}
}

// TestPragmasOnEveryConnection: the pool's connections all run with the
// connection string's pragmas, the page cache bound among them, however
// many the pool opens.
func TestPragmasOnEveryConnection(t *testing.T) {
	ctx := context.Background()
	d, _, err := Open(ctx, filepath.Join(t.TempDir(), "nixdeploy.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var conns []*sql.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range 3 {
		c, err := d.sql.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		for pragma, want := range map[string]int64{"cache_size": -cacheKiB, "busy_timeout": 10000, "foreign_keys": 1, "synchronous": 1} {
			var got int64
			if err := c.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&got); err != nil {
				t.Fatalf("connection %d: PRAGMA %s: %v", i, pragma, err)
			}
			if got != want {
				t.Errorf("connection %d: %s = %d, want %d", i, pragma, got, want)
			}
		}
	}
}
