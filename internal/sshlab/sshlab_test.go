package sshlab_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/nixdeploy/nixdeploy/internal/sshlab"
)

func run(t *testing.T, lab *sshlab.Lab, s *sshlab.Server, cmd string) (string, error) {
	t.Helper()
	return runWith(t, lab, s, cmd, false)
}

// runWith runs cmd on s, forwarding an agent that holds the lab's client
// key when withAgent is set, as the deployer does for the runner.
func runWith(t *testing.T, lab *sshlab.Lab, s *sshlab.Server, cmd string, withAgent bool) (string, error) {
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
	if withAgent {
		pem, err := os.ReadFile(lab.ClientKeyPath)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := ssh.ParseRawPrivateKey(pem)
		if err != nil {
			t.Fatal(err)
		}
		keyring := agent.NewKeyring()
		if err := keyring.Add(agent.AddedKey{PrivateKey: raw}); err != nil {
			t.Fatal(err)
		}
		if err := agent.ForwardToAgent(c, keyring); err != nil {
			t.Fatal(err)
		}
		if err := agent.RequestAgentForwarding(sess); err != nil {
			t.Fatal(err)
		}
	}
	out, err := sess.CombinedOutput(cmd)
	return string(out), err
}

// TestStubs drives the stubs through a real sshd: a good call changes the
// host's current system, a bad one is refused and logged, and the lab's
// readlink and systemctl stand-ins answer per host.
func TestStubs(t *testing.T) {
	lab := sshlab.New(t, sshlab.Options{Hosts: []string{"alpha", "beta"}})
	before := lab.CurrentSystem("alpha")

	alpha := lab.Target("alpha")
	kh := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(kh, []byte(fmt.Sprintf("[%s]:%d %s\n", alpha.Host, alpha.Port, alpha.HostKeyLine)), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := fmt.Sprintf("-o UserKnownHostsFile=%s -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -p %d", kh, alpha.Port)
	rebuild := "env NIX_SSHOPTS='" + opts + "' nixos-rebuild switch --flake /f#alpha --target-host root@127.0.0.2"

	// The runner's ~/.ssh is empty: no pin, or no agent, and the real ssh
	// the stub runs fails as it would in life.
	if out, err := run(t, lab, lab.Runner, "env NIX_SSHOPTS='-p "+fmt.Sprint(alpha.Port)+"' nixos-rebuild switch --flake /f#alpha --target-host root@127.0.0.2"); err == nil || !strings.Contains(out, "Host key verification failed") {
		t.Errorf("rebuild without a pin: %v %q", err, out)
	}
	if out, err := run(t, lab, lab.Runner, rebuild); err == nil || !strings.Contains(out, "Permission denied (publickey") {
		t.Errorf("rebuild without the agent: %v %q", err, out)
	}
	if lab.CurrentSystem("alpha") != before {
		t.Fatal("a failed rebuild changed the system")
	}
	out, err := runWith(t, lab, lab.Runner, rebuild, true)
	if err != nil {
		t.Fatalf("rebuild: %v\n%s", err, out)
	}
	if lab.CurrentSystem("alpha") == before {
		t.Error("switch did not change alpha's current system")
	}
	if out, err := run(t, lab, lab.Runner, "nixos-rebuild switch root@127.0.0.2 --flake /f#alpha"); err == nil || !strings.Contains(out, "unrecognized arguments: root@127.0.0.2") {
		t.Errorf("bad argv accepted: %q", out)
	}
	calls := lab.CallsTo("nixos-rebuild")
	if len(calls) != 5 || !strings.HasPrefix(calls[4], "BAD nixos-rebuild runner") {
		t.Errorf("calls = %q", calls)
	}

	// nixos-anywhere's parser: an unknown flag before the host is taken as
	// the host, so the real host is a second one and the usage is shown.
	if out, err := runWith(t, lab, lab.Runner, "nixos-anywhere --no-such-flag --flake /f#alpha root@127.0.0.2", true); err == nil || !strings.Contains(out, "Usage: nixos-anywhere") {
		t.Errorf("unknown flag: %v %q", err, out)
	}
	if out, err := runWith(t, lab, lab.Runner, "nixos-anywhere --phases kexec,wipe --flake /f#alpha root@127.0.0.2", true); err == nil || !strings.Contains(out, "aborted: Unknown phase: wipe") {
		t.Errorf("unknown phase: %v %q", err, out)
	}
	if out, err := runWith(t, lab, lab.Runner, "nixos-anywhere --flake /f root@127.0.0.2", true); err == nil || !strings.Contains(out, "Please specify the name of the NixOS configuration") {
		t.Errorf("no attribute: %v %q", err, out)
	}
	if out, err := run(t, lab, lab.Runner, "nix flake show /f"); err == nil || !strings.Contains(out, "is not a recognised command") {
		t.Errorf("nix flake show: %v %q", err, out)
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
