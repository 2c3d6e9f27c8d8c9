package deployer_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/deployer"
	"github.com/nixdeploy/nixdeploy/internal/sshlab"
)

// killStub kills the process group of a hanging stub (the step's group
// under the supervisor), for tests that leave a step running on purpose.
func killStub(t testing.TB, lab *sshlab.Lab, tool, host string) {
	pid, err := strconv.Atoi(lab.Control(tool + "." + host + ".pid"))
	if err != nil {
		return
	}
	if pg, err := syscall.Getpgid(pid); err == nil && pg > 1 {
		syscall.Kill(-pg, syscall.SIGKILL)
	}
}

// endHang ends a hanging stub the way its step would end by itself: its
// child goes, and the stub exits with its hang-exit status.
func endHang(t testing.TB, lab *sshlab.Lab, tool, host string) {
	t.Helper()
	pid, err := strconv.Atoi(lab.Control(tool + "." + host + ".childpid"))
	if err != nil {
		t.Fatalf("no child of the hanging %s: %v", tool, err)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("end the hang of %s: %v", tool, err)
	}
}

// waitUntil polls cond until it holds, failing the test after limit.
func waitUntil(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond) // polling a file or a sink; no event to wait on
	}
}

var knownHostsDir = regexp.MustCompile(`UserKnownHostsFile=(\S+)/known_hosts`)

// rebuildRunDir is the run directory nixos-rebuild was given.
func rebuildRunDir(t testing.TB, lab *sshlab.Lab) string {
	t.Helper()
	for _, c := range lab.CallsTo("nixos-rebuild") {
		if m := knownHostsDir.FindStringSubmatch(c); m != nil {
			return m[1]
		}
	}
	t.Fatal("nixos-rebuild was not called with a run directory")
	return ""
}

func (s *recSink) has(text string) bool {
	for _, l := range s.all() {
		if strings.Contains(l.Text, text) {
			return true
		}
	}
	return false
}

// checkNumbered: the lines "n <i>" of step appear once each, in order,
// from 1 to n.
func checkNumbered(t *testing.T, what string, lines []nixdeploy.LogLine, n int) {
	t.Helper()
	next := 1
	for _, l := range lines {
		if l.Step != "nixos-rebuild" || l.Stream != nixdeploy.StreamStdout || !strings.HasPrefix(l.Text, "n ") {
			continue
		}
		if want := fmt.Sprintf("n %d", next); l.Text != want {
			t.Fatalf("%s: got %q, want %q (a gap or a repeat)", what, l.Text, want)
		}
		next++
	}
	if next != n+1 {
		t.Fatalf("%s: %d numbered lines, want %d", what, next-1, n)
	}
}

// TestFreezeShorterThanOutageResumes: the runner's connection freezes
// while the step prints; the deployer notices through keepalives,
// reconnects once the network is back and follows the step's log from the
// byte it had reached: every line once, in order, in the sink and in the
// database, and the step's real status (0) ends it.
func TestFreezeShorterThanOutageResumes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{
		lab: sshlab.Options{RunnerProxy: true},
		opts: func(o *deployer.Options) {
			o.KeepaliveInterval = 200 * time.Millisecond
			o.KeepaliveMax = 3
			o.ConnectTimeout = time.Second
			o.Outage = time.Minute
			o.ReconnectBackoff = 100 * time.Millisecond
		},
	})
	fifo := filepath.Join(t.TempDir(), "feed")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	e.lab.Set("nixos-rebuild.node1.cat", fifo)
	done := make(chan error, 1)
	var dep *nixdeploy.Deployment
	go func() {
		var err error
		dep, _, err = e.run(t.Context(), nixdeploy.ActionSwitch, []string{"node1"})
		done <- err
	}()
	opened := make(chan *os.File, 1)
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
		}
		opened <- f
	}()
	var w *os.File
	select {
	case w = <-opened:
	case err := <-done:
		t.Fatalf("the run ended before the stub read its feed: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the stub never opened its feed")
	}
	defer w.Close()
	feed := func(from, to int) {
		var b strings.Builder
		for i := from; i <= to; i++ {
			fmt.Fprintf(&b, "n %d\n", i)
		}
		if _, err := w.WriteString(b.String()); err != nil {
			t.Fatal(err)
		}
	}
	feed(1, 1000)
	waitUntil(t, 20*time.Second, "the first lines", func() bool { return e.sink.has("n 1000") })
	e.lab.Proxy.Freeze()
	feed(1001, 2000) // written on the runner while nobody can read it
	waitUntil(t, 20*time.Second, "the lost connection", func() bool { return e.sink.has("lost the runner") })
	e.lab.Proxy.Thaw()
	waitUntil(t, 20*time.Second, "the reconnect", func() bool { return e.sink.has("reconnected to the runner") })
	feed(2001, 3000)
	w.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v\n%s", err, e.sink.text())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not end")
	}
	checkNumbered(t, "sink", e.sink.all(), 3000)
	stored := e.storedLog(dep.ID)
	checkSeq(t, "stored", stored)
	checkNumbered(t, "stored", stored, 3000)
	if d := e.stored(dep.ID); d.State != nixdeploy.StateSucceeded {
		t.Errorf("state %s", d.State)
	}
}

// TestKeysGoWhenTheStepEndsWithoutTheBot: the runner's sshd dies during
// nixos-anywhere, so no cleanup step can reach the runner; when the step
// then ends by itself, its supervisor removes the key material anyway.
func TestKeysGoWhenTheStepEndsWithoutTheBot(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{
		opts: func(o *deployer.Options) {
			o.KeepaliveInterval = 200 * time.Millisecond
			o.ConnectTimeout = time.Second
			o.Outage = time.Second
			o.ReconnectBackoff = 100 * time.Millisecond
		},
	})
	e.lab.Set("nixos-anywhere.node1.hang", "1")
	t.Cleanup(func() { killStub(t, e.lab, "nixos-anywhere", "node1") })
	done := make(chan error, 1)
	go func() {
		_, _, err := e.run(t.Context(), nixdeploy.ActionInstall, []string{"node1"})
		done <- err
	}()
	e.lab.WaitFile(t.Context(), e.lab.PIDFile("nixos-anywhere", "node1"), 30*time.Second)
	extra := e.lab.Control("nixos-anywhere.node1.extra-files")
	key := filepath.Join(extra, "etc/ssh/ssh_host_ed25519_key")
	if _, err := os.Stat(key); err != nil {
		t.Fatalf("the host key is not in the run directory while the step runs: %v", err)
	}
	e.lab.Runner.Kill()
	select {
	case err := <-done:
		if !errors.Is(err, deployer.ErrRemoteUnknown) {
			t.Fatalf("err = %v, want the step's end unknown", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not give up on the dead runner")
	}
	if _, err := os.Stat(key); err != nil {
		t.Fatalf("the key went before the step ended: %v", err)
	}
	endHang(t, e.lab, "nixos-anywhere", "node1")
	dir := filepath.Dir(extra)
	waitUntil(t, 20*time.Second, "the supervisor's status", func() bool {
		_, err := os.Stat(filepath.Join(dir, "nixos-anywhere.status"))
		return err == nil
	})
	for _, p := range []string{extra, filepath.Join(dir, "disk.key")} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is still on the runner after the step ended (%v)", p, err)
		}
	}
}

// TestCancelStopsTheRemoteGroup: a cancel reaches the step's process
// group through the supervisor, its cleanup follows, and nothing of the
// run is left on the runner.
func TestCancelStopsTheRemoteGroup(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{})
	e.lab.Set("nixos-rebuild.node1.hang", "1")
	t.Cleanup(func() { killStub(t, e.lab, "nixos-rebuild", "node1") })
	ctx, cancel := context.WithCancelCause(t.Context())
	done := make(chan error, 1)
	go func() {
		_, _, err := e.run(ctx, nixdeploy.ActionSwitch, []string{"node1"})
		done <- err
	}()
	pid := pidFrom(t, e.lab.WaitFile(t.Context(), e.lab.PIDFile("nixos-rebuild", "node1"), 30*time.Second))
	child := pidFrom(t, e.lab.WaitFile(t.Context(), e.lab.ChildPIDFile("nixos-rebuild", "node1"), 30*time.Second))
	dir := rebuildRunDir(t, e.lab)
	cancel(deployer.ErrCancelled)
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) && !errors.Is(err, deployer.ErrCancelled) {
			t.Fatalf("err = %v, want cancelled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not end after the cancel")
	}
	for _, p := range []int{pid, child} {
		if sshlab.Alive(p) {
			t.Errorf("process %d of the step survived the cancel", p)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the run directory %s is left (%v)", dir, err)
	}
	if !e.sink.has("stopped nixos-rebuild on the runner") {
		t.Errorf("no word of the stop:\n%s", e.sink.text())
	}
}

func syscallKill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

// TestSupervisedLongLines: lines longer than MaxLineBytes (one exactly
// that long) arrive in pieces through the supervisor's files as they did
// through a pipe: nothing lost, nothing added.
func TestSupervisedLongLines(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{opts: func(o *deployer.Options) { o.MaxLineBytes = 1024 }})
	in := []string{strings.Repeat("A", 1024), strings.Repeat("B", 3000), "ccc", strings.Repeat("D", 2048)}
	e.lab.Set("nixos-rebuild.node1.print", strings.Join(in, "\n"))
	dep, _, err := e.run(t.Context(), nixdeploy.ActionSwitch, []string{"node1"})
	if err != nil {
		t.Fatalf("%v\n%s", err, e.sink.text())
	}
	for what, lines := range map[string][]nixdeploy.LogLine{"sink": e.sink.all(), "stored": e.storedLog(dep.ID)} {
		var got strings.Builder
		for _, l := range lines {
			if l.Step != "nixos-rebuild" || l.Stream != nixdeploy.StreamStdout {
				continue
			}
			if l.Text == "" {
				t.Errorf("%s: an empty line", what)
			}
			got.WriteString(l.Text)
		}
		if want := strings.Join(in, ""); got.String() != want {
			t.Errorf("%s: %q, want %q", what, got.String(), want)
		}
	}
}

// TestSupervisedStreams: a supervised step's stdout and stderr both reach
// the sink and the store whole, each line once, in order and on its own
// stream, when both print at once (the follow copies them in turns).
func TestSupervisedStreams(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{})
	const outLines, errLines = 20000, 300
	e.lab.Set("nixos-rebuild.node1.lines", strconv.Itoa(outLines))
	var errText []string
	for i := 1; i <= errLines; i++ {
		errText = append(errText, fmt.Sprintf("e %d", i))
	}
	e.lab.Set("nixos-rebuild.node1.print-stderr", strings.Join(errText, "\n"))
	dep, _, err := e.run(t.Context(), nixdeploy.ActionSwitch, []string{"node1"})
	if err != nil {
		t.Fatalf("%v\n%s", err, e.sink.text())
	}
	for what, lines := range map[string][]nixdeploy.LogLine{"sink": e.sink.all(), "stored": e.storedLog(dep.ID)} {
		nextOut, nextErr := 1, 1
		var stub []string
		for _, l := range lines {
			if l.Step != "nixos-rebuild" {
				continue
			}
			switch {
			case strings.HasPrefix(l.Text, "line "):
				if want := fmt.Sprintf("line %d of %d", nextOut, outLines); l.Text != want || l.Stream != nixdeploy.StreamStdout {
					t.Fatalf("%s: got %s %q, want stdout %q", what, l.Stream, l.Text, want)
				}
				nextOut++
			case strings.HasPrefix(l.Text, "e "):
				if want := fmt.Sprintf("e %d", nextErr); l.Text != want || l.Stream != nixdeploy.StreamStderr {
					t.Fatalf("%s: got %s %q, want stderr %q", what, l.Stream, l.Text, want)
				}
				nextErr++
			case l.Stream == nixdeploy.StreamStderr:
				stub = append(stub, l.Text)
			}
		}
		if nextOut != outLines+1 || nextErr != errLines+1 {
			t.Errorf("%s: %d stdout and %d stderr lines, want %d and %d", what, nextOut-1, nextErr-1, outLines, errLines)
		}
		// The stub's own progress, on stderr as nixos-rebuild prints it.
		if got := strings.Join(stub, "|"); !strings.Contains(got, "building the system configuration...") || !strings.Contains(got, "activating the configuration...") {
			t.Errorf("%s: the stub's stderr lines: %q", what, got)
		}
	}
}
