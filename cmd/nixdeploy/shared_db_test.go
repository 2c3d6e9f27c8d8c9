package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/db"
	"github.com/nixdeploy/nixdeploy/internal/sshlab"
)

// TestTwoProcessesShareOneDatabase runs two real nixdeploy processes on
// one database file against the sshd lab (issue 13 §4). While the first
// one's nixos-rebuild runs on node1, the second one's deploy of node1 is
// refused as busy and runs nothing there; its deploy of node2 runs; and
// neither its Open nor its deployments touch the first one's row, whose
// end is recorded by the process that ran it. The old code kept the host
// locks in process memory and marked every running deployment of the file
// interrupted on Open.
func TestTwoProcessesShareOneDatabase(t *testing.T) {
	lab := sshlab.New(t, sshlab.Options{Hosts: []string{"node1", "node2"}})
	lab.Config("")
	dbPath := filepath.Join(t.TempDir(), "shared.db")
	key, err := os.ReadFile(lab.ClientKeyPath)
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), realMainEnv+"=1", "GORACE=atexit_sleep_ms=0",
		"NIXDEPLOY_DB="+dbPath, "NIXDEPLOY_CONFIG="+lab.ConfigPath, "NIXDEPLOY_AGE_IDENTITY=", "NIXDEPLOY_SSH_KEY="+string(key))
	ndp := func(ctx context.Context, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, os.Args[0], args...)
		cmd.Env = env
		return cmd
	}

	// The first process: its nixos-rebuild on node1 hangs until stopped.
	lab.Set("nixos-rebuild.node1.hang", "1")
	var firstOut, firstErr bytes.Buffer
	first := ndp(context.Background(), "deploy", "node1")
	first.Stdout, first.Stderr = &firstOut, &firstErr
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { first.Process.Kill() })
	lab.WaitFile(t.Context(), lab.PIDFile("nixos-rebuild", "node1"), time.Minute)
	// From here on node1's stub would succeed at once: a second
	// nixos-rebuild on node1 would not hang, it would show up.
	if err := os.Remove(filepath.Join(lab.ControlDir, "nixos-rebuild.node1.hang")); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	second := ndp(ctx, "deploy", "node1")
	out, err := second.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("the second process deployed node1 while the first one was deploying it: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "node1 is being deployed by deployment 1") {
		t.Errorf("the refusal does not name the holder:\n%s", out)
	}
	if strings.Contains(string(out), "interrupted by a restart") {
		t.Errorf("the second process's Open interrupted the first one's deployment:\n%s", out)
	}
	if out, err := ndp(ctx, "deploy", "node2").CombinedOutput(); err != nil {
		t.Fatalf("deploy of node2 beside the first process: %v\n%s", err, out)
	}
	if n := countCalls(t, lab, "nixos-rebuild", "node1"); n != 1 {
		t.Errorf("nixos-rebuild ran %d times on node1, want once", n)
	}

	store, interrupted, err := db.Open(t.Context(), dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if len(interrupted) != 0 {
		t.Errorf("a third Open interrupted %+v while its owner runs", interrupted)
	}
	if d, err := store.Deployment(t.Context(), 1); err != nil || d.State != nixdeploy.StateRunning {
		t.Fatalf("the first process's deployment: %s %q, %v; want running", d.State, d.Error, err)
	}

	// Stopped by its own signal, the first process records its own end.
	if err := first.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	first.Wait()
	d, err := store.Deployment(t.Context(), 1)
	if err != nil || d.State != nixdeploy.StateCancelled {
		t.Errorf("the first process's deployment ended %s (%q), %v; want cancelled by its own process", d.State, d.Error, err)
	}
	deps, err := store.Deployments(t.Context(), "", 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range deps {
		got = append(got, strings.Join(d.Hosts, ",")+"="+string(d.State))
	}
	if strings.Join(got, " ") != "node2=succeeded node1=cancelled" {
		t.Errorf("deployments stored: %v, want node1 cancelled (first process) and node2 succeeded (second); the refused one stores none", got)
	}

	// A process killed outright (no Close, its lease still running) holds
	// nothing once it is gone: the next process on this machine sees its
	// pid is dead, marks its deployment interrupted and may take the host.
	if err := os.Remove(lab.PIDFile("nixos-rebuild", "node1")); err != nil {
		t.Fatal(err)
	}
	lab.Set("nixos-rebuild.node1.hang", "1")
	killed := ndp(context.Background(), "deploy", "node1")
	if err := killed.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killed.Process.Kill() })
	lab.WaitFile(t.Context(), lab.PIDFile("nixos-rebuild", "node1"), time.Minute)
	if err := os.Remove(filepath.Join(lab.ControlDir, "nixos-rebuild.node1.hang")); err != nil {
		t.Fatal(err)
	}
	killed.Process.Kill()
	killed.Wait()
	out, err = ndp(ctx, "deploy", "node1").CombinedOutput()
	if err != nil {
		t.Fatalf("deploy of node1 after its holder was killed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "deployment 3 (switch node1) was interrupted by a restart") {
		t.Errorf("the killed process's deployment was not reported interrupted:\n%s", out)
	}
	if d, err := store.Deployment(t.Context(), 3); err != nil || d.State != nixdeploy.StateInterrupted {
		t.Errorf("the killed process's deployment: %s, %v; want interrupted", d.State, err)
	}
}

// countCalls counts the stub invocations of tool for host in the lab's
// call log.
func countCalls(t *testing.T, lab *sshlab.Lab, tool, host string) int {
	t.Helper()
	n := 0
	for _, l := range lab.CallsTo(tool) {
		if strings.Contains(l, "#"+host+"]") {
			n++
		}
	}
	return n
}
