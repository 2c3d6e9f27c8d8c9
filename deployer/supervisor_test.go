package deployer_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy/deployer"
)

// TestSupervisorStatusWrittenInPlace: the supervisor writes F.status in
// place, without a rename, so a reader may find it created and still
// empty. follow and probe take an empty status as not written yet: follow
// goes on following a live supervisor, probe says "live"; once the status
// is there, follow copies the rest and exits with it and probe reports it.
// With test -f instead of test -s, follow read the empty file and exited
// at once with a shell error.
func TestSupervisorStatusWrittenInPlace(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := filepath.Join(dir, "step")
	// A live process stands in for the supervisor.
	sup := exec.Command("sleep", "60")
	if err := sup.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sup.Process.Kill(); sup.Wait() })
	for name, body := range map[string]string{
		".out":    "first\n",
		".err":    "",
		".pid":    strconv.Itoa(sup.Process.Pid) + "\n",
		".pgid":   strconv.Itoa(sup.Process.Pid) + "\n",
		".status": "",
	} {
		if err := os.WriteFile(f+name, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	supervisor := func(mode string, args ...string) *exec.Cmd {
		return exec.Command("sh", append([]string{"-c", deployer.SupervisorScript, "nixdeploy-supervisor", mode, dir, "step"}, args...)...)
	}
	if out, err := supervisor("probe").Output(); err != nil || strings.TrimSpace(string(out)) != "live" {
		t.Fatalf("probe with an empty status = %q, %v; want live", out, err)
	}

	follow := supervisor("follow", "0", "0")
	var stdout, stderr bytes.Buffer
	follow.Stdout, follow.Stderr = &stdout, &stderr
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- follow.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("follow ended on an empty status: %v; stdout %q, stderr %q", err, stdout.String(), stderr.String())
	case <-time.After(500 * time.Millisecond):
	}
	out, err := os.OpenFile(f+".out", os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := out.WriteString("second\n"); err != nil {
		t.Fatal(err)
	}
	out.Close()
	if err := os.WriteFile(f+".status", []byte("3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 {
			t.Fatalf("follow ended with %v, want the step's status 3; stderr %q", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		follow.Process.Kill()
		t.Fatal("follow did not end once the status was written")
	}
	if got := stdout.String(); got != "first\nsecond\n" {
		t.Errorf("follow copied %q, want both lines once", got)
	}
	if out, err := supervisor("probe").Output(); err != nil || strings.TrimSpace(string(out)) != "ended 3" {
		t.Errorf("probe with the status written = %q, %v; want ended 3", out, err)
	}
}

// TestSupervisorAgentLink: with AGENT=1 the step's SSH_AUTH_SOCK is
// DIR/agent.sock, a link to the starting session's forwarded agent; a
// later follow (a reconnect) re-points it at its own session's agent.
func TestSupervisorAgentLink(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	link := filepath.Join(dir, "agent.sock")
	first, second := filepath.Join(dir, "session1", "agent.1"), filepath.Join(dir, "session2", "agent.2")
	supervisor := func(sock, mode string, args ...string) *exec.Cmd {
		c := exec.Command("sh", append([]string{"-c", deployer.SupervisorScript, "nixdeploy-supervisor", mode, dir, "step"}, args...)...)
		c.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
		return c
	}
	out, err := supervisor(first, "start", "30s", "1s", "1", "sh", "-c", `echo "$SSH_AUTH_SOCK"; readlink "$SSH_AUTH_SOCK"`).Output()
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	if want := link + "\n" + first + "\n"; string(out) != want {
		t.Errorf("the step saw SSH_AUTH_SOCK and its target %q, want %q", out, want)
	}
	if _, err := supervisor(second, "follow", "0", "0").Output(); err != nil {
		t.Fatalf("follow: %v", err)
	}
	if got, err := os.Readlink(link); err != nil || got != second {
		t.Errorf("after the follow agent.sock points at %q (%v), want the new session's %q", got, err, second)
	}
	if _, err := os.Lstat(link + ".new"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("agent.sock.new is left behind: %v", err)
	}
}
