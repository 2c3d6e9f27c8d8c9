package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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
	lab, dbPath, ndp := realLab(t)

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

	// A process killed outright (SIGKILL: no Close, its lease still
	// running) during a long step: the step goes on under its supervisor
	// on the runner, so the next process on this machine, which sees the
	// killed one's pid is gone, reattaches to it (issue 14) instead of
	// marking it interrupted, follows it to its end, and records its real
	// end, with the log stored once.
	if err := os.Remove(lab.PIDFile("nixos-rebuild", "node1")); err != nil {
		t.Fatal(err)
	}
	lab.Set("nixos-rebuild.node1.hang", "1")
	lab.Set("nixos-rebuild.node1.hang-exit", "0")
	lab.Set("nixos-rebuild.node1.lines", "2000")
	t.Cleanup(func() { killGroup(lab, "nixos-rebuild", "node1") })
	killed := ndp(context.Background(), "deploy", "node1")
	if err := killed.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killed.Process.Kill() })
	lab.WaitFile(t.Context(), lab.PIDFile("nixos-rebuild", "node1"), time.Minute)
	killed.Process.Kill()
	killed.Wait()
	var next syncBuffer
	restarted := ndp(ctx, "deploy", "node1")
	restarted.Stdout, restarted.Stderr = &next, &next
	if err := restarted.Start(); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, time.Minute, "the reattach", func() bool { return strings.Contains(next.String(), "reattached to nixos-rebuild on the runner") })
	// Its own deploy of node1, after the reattach, must not hang.
	if err := os.Remove(filepath.Join(lab.ControlDir, "nixos-rebuild.node1.hang")); err != nil {
		t.Fatal(err)
	}
	endHang(t, lab, "nixos-rebuild", "node1")
	if err := restarted.Wait(); err != nil {
		t.Fatalf("the next process: %v\n%s", err, next.String())
	}
	if !strings.Contains(next.String(), "deployment 3 (reattached): succeeded") {
		t.Errorf("the killed process's deployment was not finished by the next one:\n%s", next.String())
	}
	if d, err := store.Deployment(t.Context(), 3); err != nil || d.State != nixdeploy.StateSucceeded {
		t.Errorf("the killed process's deployment: %s (%q), %v; want succeeded", d.State, d.Error, err)
	}
	checkLogOnce(t, store, 3, 2000)
	if n := countCalls(t, lab, "nixos-rebuild", "node1"); n != 3 {
		t.Errorf("nixos-rebuild ran %d times on node1, want 3 (the first process, the killed one, the next one's own deploy): the reattach must not start it again", n)
	}
}

// TestKilledStepEndsWhileDown: a `deploy` process is SIGKILLed during
// nixos-rebuild, and the step fails (status 3) before any process runs
// again; the next process reads the status and the rest of the log from
// the run directory and records the step's real end, not "interrupted".
func TestKilledStepEndsWhileDown(t *testing.T) {
	lab, dbPath, ndp := realLab(t)
	lab.Set("nixos-rebuild.node1.hang", "1")
	lab.Set("nixos-rebuild.node1.hang-exit", "3")
	lab.Set("nixos-rebuild.node1.lines", "1500")
	t.Cleanup(func() { killGroup(lab, "nixos-rebuild", "node1") })
	killed := ndp(context.Background(), "deploy", "node1")
	if err := killed.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killed.Process.Kill() })
	lab.WaitFile(t.Context(), lab.PIDFile("nixos-rebuild", "node1"), time.Minute)
	killed.Process.Kill()
	killed.Wait()
	endHang(t, lab, "nixos-rebuild", "node1")
	dir := ""
	for _, c := range lab.CallsTo("nixos-rebuild") {
		if _, rest, ok := strings.Cut(c, "UserKnownHostsFile="); ok {
			dir, _, _ = strings.Cut(rest, "/known_hosts")
		}
	}
	pollUntil(t, time.Minute, "the step's status on the runner", func() bool {
		_, err := os.Stat(filepath.Join(dir, "nixos-rebuild.status"))
		return err == nil
	})

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	out, err := ndp(ctx, "deploy", "node2").CombinedOutput()
	if err != nil {
		t.Fatalf("the next process: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "deployment 1 (reattached): failed") {
		t.Errorf("the killed process's deployment was not finished with its step's end:\n%s", out)
	}
	store, _, err := db.Open(t.Context(), dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	d, err := store.Deployment(t.Context(), 1)
	if err != nil || d.State != nixdeploy.StateFailed || d.ExitCode != 3 {
		t.Errorf("deployment 1: %s exit %d (%q), %v; want failed with nixos-rebuild's status 3", d.State, d.ExitCode, d.Error, err)
	}
	checkLogOnce(t, store, 1, 1500)
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the run directory %s is left on the runner (%v)", dir, err)
	}
}

// checkLogOnce: the stub's "line i of n" lines are stored once each, in
// order, and the stub's line after its hang too.
// realLab is a two-node sshd lab and a way to run real nixdeploy
// processes (this test binary as nixdeploy, see TestMain) on one database
// file against it, with the lab's config and the bot's key.
func realLab(t *testing.T) (lab *sshlab.Lab, dbPath string, ndp func(ctx context.Context, args ...string) *exec.Cmd) {
	t.Helper()
	lab = sshlab.New(t, sshlab.Options{Hosts: []string{"node1", "node2"}})
	lab.Config("")
	dbPath = filepath.Join(t.TempDir(), "shared.db")
	key, err := os.ReadFile(lab.ClientKeyPath)
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), realMainEnv+"=1", "GORACE=atexit_sleep_ms=0",
		"NIXDEPLOY_DB="+dbPath, "NIXDEPLOY_CONFIG="+lab.ConfigPath, "NIXDEPLOY_AGE_IDENTITY=", "NIXDEPLOY_SSH_KEY="+string(key))
	return lab, dbPath, func(ctx context.Context, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, os.Args[0], args...)
		cmd.Env = env
		return cmd
	}
}

func checkLogOnce(t *testing.T, store *db.DB, id int64, n int) {
	t.Helper()
	checkStepLogOnce(t, store, id, "nixos-rebuild", n)
}

// checkStepLogOnce is checkLogOnce for the "line i of n" lines of step.
func checkStepLogOnce(t *testing.T, store *db.DB, id int64, step string, n int) {
	t.Helper()
	next, after := 1, 0
	var seq int64
	if err := store.EachLog(t.Context(), id, func(l nixdeploy.LogLine) error {
		seq++
		if l.Seq != seq {
			t.Fatalf("stored line %d has seq %d", seq, l.Seq)
		}
		if l.Text == "after the hang" {
			after++
		}
		if l.Step == step && strings.HasPrefix(l.Text, "line ") {
			if want := fmt.Sprintf("line %d of %d", next, n); l.Text != want {
				t.Fatalf("stored %q, want %q", l.Text, want)
			}
			next++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if next != n+1 || after != 1 {
		t.Errorf("stored %d of %d lines and %d lines after the hang, want all once", next-1, n, after)
	}
}

// endHang ends a hanging stub: its child goes and it exits with its
// hang-exit status, as the step would end by itself.
func endHang(t *testing.T, lab *sshlab.Lab, tool, host string) {
	t.Helper()
	pid, err := strconv.Atoi(lab.Control(tool + "." + host + ".childpid"))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
}

// killGroup kills what is left of a stub's process group.
func killGroup(lab *sshlab.Lab, tool, host string) {
	if pid, err := strconv.Atoi(lab.Control(tool + "." + host + ".pid")); err == nil {
		if pg, err := syscall.Getpgid(pid); err == nil && pg > 1 {
			syscall.Kill(-pg, syscall.SIGKILL)
		}
	}
}

func pollUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond) // polling a file or a process's output
	}
}

// syncBuffer is a buffer a process writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
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
