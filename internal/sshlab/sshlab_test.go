package sshlab_test

import (
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/nixdeploy/nixdeploy/internal/sshlab"
)

func run(t *testing.T, lab *sshlab.Lab, s *sshlab.Server, cmd string) (string, error) {
	t.Helper()
	c, err := ssh.Dial("tcp", s.Addr, &ssh.ClientConfig{
		User:            lab.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(lab.Client)},
		HostKeyCallback: ssh.FixedHostKey(s.HostKey),
	})
	if err != nil {
		t.Fatalf("dial %s: %v", s.Name, err)
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	out, err := sess.CombinedOutput(cmd)
	return string(out), err
}

// TestStubs drives the stubs through a real sshd: a good call changes the
// host's current system, a bad one is refused and logged, and the lab's
// readlink and systemctl stand-ins answer per host.
func TestStubs(t *testing.T) {
	lab := sshlab.New(t, sshlab.Options{Hosts: []string{"alpha", "beta"}})
	before := lab.CurrentSystem("alpha")

	out, err := run(t, lab, lab.Runner, "nixos-rebuild switch --flake /f#alpha --target-host root@127.0.0.2")
	if err != nil {
		t.Fatalf("rebuild: %v\n%s", err, out)
	}
	if lab.CurrentSystem("alpha") == before {
		t.Error("switch did not change alpha's current system")
	}
	if _, err := run(t, lab, lab.Runner, "nixos-rebuild switch root@127.0.0.2 --flake /f#alpha"); err == nil {
		t.Error("bad argv accepted")
	}
	calls := lab.CallsTo("nixos-rebuild")
	if len(calls) != 3 || !strings.HasPrefix(calls[2], "BAD nixos-rebuild runner") {
		t.Errorf("calls = %q", calls)
	}

	lab.Set("systemctl.beta.state", "degraded")
	lab.Set("systemctl.beta.failed", "foo.service loaded failed failed Foo")
	if out, err := run(t, lab, lab.Target("alpha"), "systemctl is-system-running; readlink /run/current-system"); err != nil || !strings.HasPrefix(out, "running\n"+lab.Dir) {
		t.Errorf("alpha: %v %q", err, out)
	}
	if out, _ := run(t, lab, lab.Target("beta"), "systemctl is-system-running"); out != "degraded\n" {
		t.Errorf("beta: %q", out)
	}
	if lab.Target("beta").Logins() == 0 {
		t.Error("no login logged")
	}
}
