package deployer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/deployer"
	"github.com/nixdeploy/nixdeploy/internal/sshlab"
)

// labRev is the revision the lab's stub nix reports for its flakes.
const labRev = "0123456789abcdef0123456789abcdef01234567"

// TestSwitch: a switch runs nixos-rebuild on the runner with exactly the
// expected argv, and verification sees the new system running.
func TestSwitch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{})
	before := e.lab.CurrentSystem("node1")
	dep, rep, err := e.run(t.Context(), nixdeploy.ActionSwitch, []string{"node1"})
	if err != nil {
		t.Fatalf("switch: %v\n%s", err, e.sink.text())
	}
	noBadCalls(t, e.lab)
	tgt := e.lab.Target("node1")
	calls := e.lab.CallsTo("nixos-rebuild")
	if len(calls) != 1 {
		t.Fatalf("nixos-rebuild calls: %q", calls)
	}
	tmp := strings.TrimSuffix(strings.TrimPrefix(regexp.MustCompile(`UserKnownHostsFile=(\S+)`).FindString(calls[0]), "UserKnownHostsFile="), "/known_hosts")
	want := fmt.Sprintf("nixos-rebuild runner [switch] [--flake] [git+file://%s?rev=%s#node1] [--target-host] [root@%s] {NIX_SSHOPTS=-o UserKnownHostsFile=%s/known_hosts -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -p %d}",
		e.lab.Flake, labRev, tgt.Host, tmp, tgt.Port)
	if calls[0] != want {
		t.Errorf("nixos-rebuild calls:\n got %q\nwant %q", calls[0], want)
	}
	if tmp == "" || exists(tmp) {
		t.Errorf("run directory %q was not removed", tmp)
	}
	// The stub reached the target with real ssh: the target's readlink ran
	// twice from the bot (probe, verify) and once from the runner's ssh.
	if n := len(e.lab.CallsTo("readlink")); n != 3 {
		t.Errorf("readlink ran %d times on node1, want 3 (probe, nixos-rebuild's ssh, verify)", n)
	}
	if got := e.stored(dep.ID).Revision; got != labRev {
		t.Errorf("recorded revision %q, want %q", got, labRev)
	}
	after := e.lab.CurrentSystem("node1")
	if after == before {
		t.Fatal("the stub did not change the system")
	}
	if h := rep.Hosts[0]; h.Outcome != deployer.OutcomeSucceeded || h.Before != before || h.After != after {
		t.Errorf("report = %+v", h)
	}
	if got := e.stored(dep.ID); got.State != nixdeploy.StateSucceeded || got.ExitCode != 0 || got.StartedAt.IsZero() || got.EndedAt.IsZero() {
		t.Errorf("stored deployment = %+v", got)
	}
	steps := e.steps(dep.ID)
	if got := stepNames(steps); got != "connect mktemp known-hosts lock-flake probe nixos-rebuild verify remove-tmp" {
		t.Errorf("steps = %s", got)
	}
	if v := steps[len(steps)-2]; v.Before != before || v.After != after {
		t.Errorf("verify step recorded %q → %q, want %q → %q", v.Before, v.After, before, after)
	}
	if cur, _, err := e.db.CurrentSystem(t.Context(), "node1"); err != nil || cur != after {
		t.Errorf("db current system = %q, %v", cur, err)
	}
	sunk := e.sink.all()
	checkSeq(t, "sink", sunk)
	stored := e.storedLog(dep.ID)
	if len(stored) != len(sunk) {
		t.Errorf("stored %d lines, sink saw %d", len(stored), len(sunk))
	}
	if !strings.Contains(e.sink.text(), "activating the configuration...") {
		t.Errorf("stub output missing from the sink:\n%s", e.sink.text())
	}
}

// TestInstall: the whole install plan against real sshd: key upload with
// the right modes (checked by the stub against the pinned .pub),
// nixos-anywhere's argv exactly as REFERENCE.md wants it (host last, once),
// phases as events, the temp dir removed, the host coming back with its
// pinned key, then switch and verify.
func TestInstall(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{})
	var preflighted []string
	e.opts.Preflight = func(ctx context.Context, host string) error {
		preflighted = append(preflighted, host)
		return nil
	}
	d, err := deployer.New(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	e.d = d
	dep, _, err := e.run(t.Context(), nixdeploy.ActionInstall, []string{"node1"})
	if err != nil {
		t.Fatalf("install: %v\n%s", err, e.sink.text())
	}
	noBadCalls(t, e.lab)
	if len(preflighted) != 1 || preflighted[0] != "node1" {
		t.Errorf("preflight ran for %q", preflighted)
	}
	tmp := e.lab.ExtraFilesDir("node1")
	if tmp == "" {
		t.Fatal("nixos-anywhere did not record its extra-files dir")
	}
	tgt := e.lab.Target("node1")
	want := fmt.Sprintf("nixos-anywhere runner [--ssh-port] [%d] [--extra-files] [%s] [--flake] [git+file://%s?rev=%s#node1] [root@%s]", tgt.Port, tmp, e.lab.InstallerFlake, labRev, tgt.Host)
	if got := e.lab.CallsTo("nixos-anywhere"); len(got) != 1 || got[0] != want {
		t.Errorf("nixos-anywhere calls:\n got %q\nwant %q", got, want)
	}
	if exists(tmp) {
		t.Errorf("temp dir %s with the host key is still on the runner", tmp)
	}
	if got := stepNames(e.steps(dep.ID)); got != "preflight connect mktemp known-hosts lock-flake lock-installer disk-devices upload-host-key upload-host-key-pub nixos-anywhere remove-keys wait-for-ssh probe nixos-rebuild verify remove-tmp" {
		t.Errorf("steps = %s", got)
	}
	var phases []string
	for _, l := range e.sink.all() {
		if p, ok := deployer.Phase(l); ok {
			phases = append(phases, p)
		}
	}
	wantPhases := []string{"Uploading install SSH keys", "Gathering machine facts", "Switching system into kexec",
		"Waiting for the machine to become unreachable due to reboot", "Formatting hard drive with disko",
		"Copying extra files", "Uploading the system closure", "Installing NixOS", "Rebooting", "Done!"}
	if strings.Join(phases, "|") != strings.Join(wantPhases, "|") {
		t.Errorf("phases = %q", phases)
	}
	if got := e.stored(dep.ID); got.State != nixdeploy.StateSucceeded {
		t.Errorf("state = %s", got.State)
	}
}

// TestFailureExitCode: a failing nixos-rebuild fails the deployment with
// its exit status, names the step, quotes its last stderr line, and skips
// verification.
func TestFailureExitCode(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{})
	e.lab.Set("nixos-rebuild.exit", "3")
	dep, rep, err := e.run(t.Context(), nixdeploy.ActionSwitch, []string{"node1"})
	se := asStepError(t, err)
	if se.Host != "node1" || se.Step != "nixos-rebuild" || se.ExitCode != 3 {
		t.Errorf("step error = %+v", se)
	}
	var ee *deployer.ExitError
	if !errors.As(err, &ee) || ee.Code != 3 {
		t.Errorf("no ExitError with code 3 in %v", err)
	}
	if !strings.Contains(err.Error(), "exited with status 3") || !strings.Contains(err.Error(), "stub told to fail with status 3") {
		t.Errorf("error = %q", err)
	}
	if rep.State != nixdeploy.StateFailed || rep.Hosts[0].Step != "nixos-rebuild" {
		t.Errorf("report = %+v", rep)
	}
	got := e.stored(dep.ID)
	if got.State != nixdeploy.StateFailed || got.ExitCode != 3 || !strings.Contains(got.Error, "nixos-rebuild") {
		t.Errorf("stored = %+v", got)
	}
	steps := e.steps(dep.ID)
	if names := stepNames(steps); names != "connect mktemp known-hosts lock-flake probe nixos-rebuild remove-tmp" {
		t.Errorf("steps = %s", names)
	}
	if last := steps[len(steps)-2]; last.ExitCode != 3 || last.Error == "" {
		t.Errorf("failed step recorded as %+v", last)
	}
	if len(e.lab.CallsTo("systemctl")) != 0 {
		t.Error("verification ran after a failed step")
	}
}

// TestHostKeyMismatch: a wrong key on the target or the runner aborts in
// the SSH handshake: the error names the host and both fingerprints, no
// stub ran anywhere, and sshd logged no login on the mismatched server.
func TestHostKeyMismatch(t *testing.T) {
	t.Parallel()
	t.Run("target", func(t *testing.T) {
		t.Parallel()
		wrong := sshlab.NewPublicKey(t)
		e := newEnv(t, envConfig{opts: func(o *deployer.Options) {
			o.HostKeys = wrongKeys{HostKeys: o.HostKeys, host: "node1", key: wrong}
		}})
		dep, _, err := e.run(t.Context(), nixdeploy.ActionSwitch, []string{"node1"})
		checkMismatch(t, err, "node1", ssh.FingerprintSHA256(wrong), ssh.FingerprintSHA256(e.lab.Target("node1").HostKey))
		if se := asStepError(t, err); se.Step != "connect" {
			t.Errorf("failed at step %s, want connect", se.Step)
		}
		if c := e.lab.Calls(); len(c) != 0 {
			t.Errorf("stubs ran: %q", c)
		}
		if n := e.lab.Target("node1").Logins(); n != 0 {
			t.Errorf("%d logins on the mismatched target", n)
		}
		if got := e.stored(dep.ID); got.State != nixdeploy.StateFailed || !strings.Contains(got.Error, "host key mismatch") {
			t.Errorf("stored = %+v", got)
		}
	})
	t.Run("runner", func(t *testing.T) {
		t.Parallel()
		wrong := sshlab.NewPublicKey(t)
		e := newEnv(t, envConfig{cfg: func(c *nixdeploy.Config) {
			c.Runner.HostKey = string(ssh.MarshalAuthorizedKey(wrong))
		}})
		_, _, err := e.run(t.Context(), nixdeploy.ActionInstall, []string{"node1"})
		checkMismatch(t, err, "runner", ssh.FingerprintSHA256(wrong), ssh.FingerprintSHA256(e.lab.Runner.HostKey))
		if c := e.lab.Calls(); len(c) != 0 {
			t.Errorf("stubs ran: %q", c)
		}
		if n := e.lab.Runner.Logins(); n != 0 {
			t.Errorf("%d logins on the mismatched runner", n)
		}
	})
}

// TestRunnerKnownHosts: the runner can be pinned through a known_hosts
// file instead of host_key; a wrong entry there is a mismatch too.
func TestRunnerKnownHosts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		wrong bool
	}{{"match", false}, {"mismatch", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			wrong := sshlab.NewPublicKey(t)
			e := newEnv(t, envConfig{cfg: func(c *nixdeploy.Config) {
				key := c.Runner.HostKey
				if tc.wrong {
					key = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(wrong)))
				}
				_, hostport, _ := nixdeploy.ParseSSHAddress(c.Runner.Address)
				kh := filepath.Join(t.TempDir(), "known_hosts")
				line := knownhostsLine(hostport, key)
				if err := os.WriteFile(kh, []byte("# runner\n"+line+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				c.Runner.HostKey, c.Runner.KnownHosts = "", kh
			}})
			_, _, err := e.run(t.Context(), nixdeploy.ActionSwitch, []string{"node1"})
			if !tc.wrong {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			checkMismatch(t, err, "runner", ssh.FingerprintSHA256(wrong), ssh.FingerprintSHA256(e.lab.Runner.HostKey))
			if c := e.lab.Calls(); len(c) != 0 {
				t.Errorf("stubs ran: %q", c)
			}
		})
	}
}

func knownhostsLine(hostport, authorizedKey string) string {
	host, port, _ := strings.Cut(hostport, ":")
	return "[" + host + "]:" + port + " " + authorizedKey
}

// TestInstallWrongKeyAfterReboot: a host that comes back from the install
// with a key other than its pinned one fails hard (once the reboot grace
// is over): nothing more is sent to it.
func TestInstallWrongKeyAfterReboot(t *testing.T) {
	t.Parallel()
	var installed atomic.Bool
	wrong := sshlab.NewPublicKey(t)
	e := newEnv(t, envConfig{opts: func(o *deployer.Options) {
		o.HostKeys = &afterInstallKeys{HostKeys: o.HostKeys, installed: &installed, wrong: wrong}
	}})
	var loginsAtDone atomic.Int64
	done := deployer.SinkFunc(func(l nixdeploy.LogLine) {
		if p, ok := deployer.Phase(l); ok && p == "Done!" {
			// nixos-anywhere's own ssh logged in before the install.
			loginsAtDone.Store(int64(e.lab.Target("node1").Logins()))
			installed.Store(true)
		}
	})
	dep, _, err := e.run(t.Context(), nixdeploy.ActionInstall, []string{"node1"}, done)
	if !errors.Is(err, deployer.ErrHostKeyMismatch) || !strings.Contains(err.Error(), "came back with a different host key") {
		t.Fatalf("err = %v", err)
	}
	if se := asStepError(t, err); se.Step != "wait-for-ssh" {
		t.Errorf("failed at %s", se.Step)
	}
	if len(e.lab.CallsTo("nixos-rebuild")) != 0 || int64(e.lab.Target("node1").Logins()) != loginsAtDone.Load() {
		t.Error("the deployer went on with a host that has the wrong key")
	}
	if got := stepNames(e.steps(dep.ID)); !strings.HasSuffix(got, "nixos-anywhere remove-keys wait-for-ssh remove-tmp") {
		t.Errorf("steps = %s", got)
	}
}

// afterInstallKeys pins a wrong key for every host once installed is set,
// as if the machine had booted something else.
type afterInstallKeys struct {
	deployer.HostKeys
	installed *atomic.Bool
	wrong     ssh.PublicKey
}

func (k *afterInstallKeys) HostPublicKey(host string) (ssh.PublicKey, error) {
	if k.installed.Load() {
		return k.wrong, nil
	}
	return k.HostKeys.HostPublicKey(host)
}

func checkMismatch(t *testing.T, err error, host, want, got string) {
	t.Helper()
	if !errors.Is(err, deployer.ErrHostKeyMismatch) {
		t.Fatalf("error %v is not a host key mismatch", err)
	}
	var hk *deployer.HostKeyError
	if !errors.As(err, &hk) || hk.Host != host || len(hk.Want) != 1 || hk.Want[0] != want || hk.Got != got {
		t.Errorf("mismatch = %+v, want host %s want %s got %s", hk, host, want, got)
	}
	for _, s := range []string{host, want, got} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %s", err, s)
		}
	}
}

// TestUnknownHost: a host that is not in the fleet config is refused before
// anything is recorded or run.
func TestUnknownHost(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{})
	_, rep, err := e.run(t.Context(), nixdeploy.ActionSwitch, []string{"node1; rm -rf /"})
	if !errors.Is(err, nixdeploy.ErrUnknownHost) || rep != nil {
		t.Fatalf("err = %v, report = %v", err, rep)
	}
	if deps, _ := e.db.Deployments(t.Context(), "", 10); len(deps) != 0 {
		t.Errorf("deployments recorded: %+v", deps)
	}
	if c := e.lab.Calls(); len(c) != 0 {
		t.Errorf("stubs ran: %q", c)
	}
	if _, err := e.d.Plan("nope", nixdeploy.ActionSwitch); !errors.Is(err, nixdeploy.ErrUnknownHost) {
		t.Errorf("Plan: %v", err)
	}
}

// TestCancelInstall: cancelling while nixos-anywhere runs kills its whole
// process group on the runner, still removes the temp dir holding the host
// key, runs nothing further and records the deployment as cancelled.
func TestCancelInstall(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{})
	e.lab.Set("nixos-anywhere.hang", "1")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	type result struct {
		dep *nixdeploy.Deployment
		rep *deployer.Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		dep, rep, err := e.run(ctx, nixdeploy.ActionInstall, []string{"node1"})
		done <- result{dep, rep, err}
	}()
	pid := pidFrom(t, e.lab.WaitFile(t.Context(), e.lab.PIDFile("nixos-anywhere", "node1"), 20*time.Second))
	child := pidFrom(t, e.lab.WaitFile(t.Context(), e.lab.ChildPIDFile("nixos-anywhere", "node1"), 20*time.Second))
	tmp := e.lab.ExtraFilesDir("node1")
	if !exists(tmp) {
		t.Fatalf("extra-files dir %q missing while nixos-anywhere runs", tmp)
	}
	cancel()
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if !errors.Is(r.err, context.Canceled) || r.rep.State != nixdeploy.StateCancelled {
		t.Fatalf("err = %v, state = %v", r.err, r.rep.State)
	}
	if sshlab.Alive(pid) || sshlab.Alive(child) {
		t.Errorf("remote processes survived the cancel: stub %v, child %v", sshlab.Alive(pid), sshlab.Alive(child))
	}
	if exists(tmp) {
		t.Errorf("temp dir %s survived the cancel", tmp)
	}
	if got := stepNames(e.steps(r.dep.ID)); got != "preflight connect mktemp known-hosts lock-flake lock-installer disk-devices upload-host-key upload-host-key-pub nixos-anywhere remove-keys remove-tmp" {
		t.Errorf("steps = %s", got)
	}
	if got := e.stored(r.dep.ID); got.State != nixdeploy.StateCancelled {
		t.Errorf("stored state = %s", got.State)
	}
	if len(e.lab.CallsTo("nixos-rebuild")) != 0 {
		t.Error("nixos-rebuild ran after the cancel")
	}
	if !strings.Contains(e.sink.text(), "is gone") {
		t.Errorf("no note that the process group is gone:\n%s", e.sink.text())
	}
}

// TestStepTimeout: a hanging command is stopped by its step's timeout, its
// processes are gone, and the error says it timed out.
func TestStepTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 3 * time.Second
	e := newEnv(t, envConfig{opts: func(o *deployer.Options) { o.Timeouts.Rebuild = timeout }})
	e.lab.Set("nixos-rebuild.hang", "1")
	type result struct {
		rep *deployer.Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		_, rep, err := e.run(t.Context(), nixdeploy.ActionSwitch, []string{"node1"})
		done <- result{rep, err}
	}()
	pid := pidFrom(t, e.lab.WaitFile(t.Context(), e.lab.PIDFile("nixos-rebuild", "node1"), 20*time.Second))
	child := pidFrom(t, e.lab.WaitFile(t.Context(), e.lab.ChildPIDFile("nixos-rebuild", "node1"), 20*time.Second))
	var r result
	select {
	case r = <-done:
	case <-time.After(timeout + 15*time.Second):
		t.Fatal("the step timeout did not stop the hanging command")
	}
	if !errors.Is(r.err, deployer.ErrStepTimeout) || !strings.Contains(r.err.Error(), "timed out after 3s") {
		t.Fatalf("err = %v", r.err)
	}
	if se := asStepError(t, r.err); se.Step != "nixos-rebuild" || r.rep.State != nixdeploy.StateFailed {
		t.Errorf("step error = %+v, state %s", se, r.rep.State)
	}
	if sshlab.Alive(pid) || sshlab.Alive(child) {
		t.Error("the timed-out command is still running")
	}
}

// TestConnectionLost: a runner that stops answering (a frozen network) or
// dies (sshd killed with its sessions) for longer than the outage limit
// fails the step with a clear reason within the keepalive bound plus the
// outage limit, not at the step timeout, and says the step may still be
// running: the supervised step outlives the connection.
func TestConnectionLost(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		freeze bool
		want   string
	}{
		{"frozen", true, "stopped answering"},
		{"killed", false, "connection to runner closed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const interval = 200 * time.Millisecond
			e := newEnv(t, envConfig{
				lab: sshlab.Options{RunnerProxy: true},
				opts: func(o *deployer.Options) {
					o.KeepaliveInterval = interval
					o.KeepaliveMax = 3
					o.ConnectTimeout = time.Second
					o.Outage = 2 * time.Second
					o.ReconnectBackoff = 100 * time.Millisecond
				},
			})
			e.lab.Set("nixos-rebuild.hang", "1")
			t.Cleanup(func() { killStub(t, e.lab, "nixos-rebuild", "node1") })
			done := make(chan error, 1)
			go func() {
				_, _, err := e.run(t.Context(), nixdeploy.ActionSwitch, []string{"node1"})
				done <- err
			}()
			e.lab.WaitFile(t.Context(), e.lab.PIDFile("nixos-rebuild", "node1"), 20*time.Second)
			start := time.Now()
			if tc.freeze {
				e.lab.Proxy.Freeze()
			} else {
				e.lab.Runner.Kill()
			}
			var err error
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not notice the lost runner")
			}
			took := time.Since(start)
			if !errors.Is(err, deployer.ErrConnectionLost) || !errors.Is(err, deployer.ErrRemoteUnknown) ||
				!strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "may still be running") {
				t.Fatalf("err = %v, want connection lost: %s, and may still be running", err, tc.want)
			}
			if se := asStepError(t, err); se.Step != "nixos-rebuild" {
				t.Errorf("failed step %s", se.Step)
			}
			// The step outlived the connection, under its supervisor.
			if pid, _ := strconv.Atoi(e.lab.Control("nixos-rebuild.node1.pid")); !sshlab.Alive(pid) {
				t.Errorf("the step (pid %d) died with the connection", pid)
			}
			// 3 missed keepalives plus one interval to send the first,
			// then the outage limit and one connect timeout.
			if bound := 4*interval + 2*time.Second + time.Second + 2*time.Second; took > bound {
				t.Errorf("noticed after %s, bound %s", took, bound)
			}
		})
	}
}

// TestManyLines: 200,000 lines reach the sink and the database complete
// and in order.
func TestManyLines(t *testing.T) {
	t.Parallel()
	const n = 200000
	e := newEnv(t, envConfig{})
	e.lab.Set("nixos-rebuild.lines", strconv.Itoa(n))
	dep, _, err := e.run(t.Context(), nixdeploy.ActionSwitch, []string{"node1"})
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, lines []nixdeploy.LogLine) {
		t.Helper()
		checkSeq(t, what, lines)
		next := 1
		for _, l := range lines {
			if l.Step != "nixos-rebuild" || l.Stream != nixdeploy.StreamStdout || !strings.HasPrefix(l.Text, "line ") {
				continue
			}
			if want := fmt.Sprintf("line %d of %d", next, n); l.Text != want {
				t.Fatalf("%s: got %q, want %q", what, l.Text, want)
			}
			next++
		}
		if next != n+1 {
			t.Fatalf("%s: %d of %d lines", what, next-1, n)
		}
	}
	check("sink", e.sink.all())
	stored := e.storedLog(dep.ID)
	check("database", stored)
	if len(stored) != len(e.sink.all()) {
		t.Errorf("database has %d lines, sink %d", len(stored), len(e.sink.all()))
	}
}

// TestRedaction: private-key blocks, age identities, configured secret
// values and the host key being installed never reach a sink or the
// database, on stdout or stderr.
func TestRedaction(t *testing.T) {
	const envName = "NIXDEPLOY_TEST_SECRET_TOKEN"
	const secret = "tok-3f9a1c77e2b94d0e"
	t.Setenv(envName, secret)
	e := newEnv(t, envConfig{cfg: func(c *nixdeploy.Config) { c.Secrets.RedactEnv = []string{envName} }})

	other := filepath.Join(t.TempDir(), "other_key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	otherPEM, _ := os.ReadFile(other)
	hostPEM, _ := e.lab.HostKeys().HostPrivateKey("node1")
	var hostBody []string
	for _, l := range strings.Split(strings.TrimSpace(string(hostPEM)), "\n") {
		if !strings.HasPrefix(l, "-----") {
			hostBody = append(hostBody, l)
		}
	}
	const age = "AGE-SECRET-KEY-1QQQSYQCYQ5RQWZQFPG9SCRGWPUGPZYSNZS23V9CCRYDPK4QQFXQSSCKHRF"
	out := strings.Join([]string{
		"copying key:",
		strings.TrimSpace(string(otherPEM)),
		"identity " + age + " loaded",
		"token=" + secret + ";",
		"the host key, bare:",
		strings.Join(hostBody, "\n"),
		"after the secrets",
	}, "\n")
	e.lab.Set("nixos-anywhere.print", out)
	e.lab.Set("nixos-anywhere.print-stderr", out)

	var term bytes.Buffer
	dep, _, err := e.run(t.Context(), nixdeploy.ActionInstall, []string{"node1"}, deployer.TextSink(&term))
	if err != nil {
		t.Fatalf("install: %v\n%s", err, e.sink.text())
	}
	var db strings.Builder
	for _, l := range e.storedLog(dep.ID) {
		db.WriteString(l.Text + "\n")
	}
	secrets := []string{age, secret}
	for _, l := range strings.Split(string(otherPEM), "\n") {
		if l != "" && !strings.HasPrefix(l, "-----") {
			secrets = append(secrets, l)
		}
	}
	secrets = append(secrets, hostBody...)
	for name, text := range map[string]string{"terminal": term.String(), "sink": e.sink.text(), "database": db.String()} {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s shows secret %q", name, s)
			}
		}
		if c := strings.Count(text, deployer.Redacted); c < 8 {
			t.Errorf("%s: only %d redactions:\n%s", name, c, text)
		}
		if !strings.Contains(text, "after the secrets") || !strings.Contains(text, "-----BEGIN OPENSSH PRIVATE KEY-----") {
			t.Errorf("%s lost ordinary output:\n%s", name, text)
		}
	}
}

// TestBatchHalts: a batch runs hosts in order and stops at the first
// failure; the hosts after it are never touched.
func TestBatchHalts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{lab: sshlab.Options{Hosts: []string{"alpha", "beta", "gamma"}}})
	e.lab.Set("nixos-rebuild.beta.exit", "1")
	dep, rep, err := e.run(t.Context(), nixdeploy.ActionSwitch, []string{"alpha", "beta", "gamma"})
	se := asStepError(t, err)
	if se.Host != "beta" || se.Step != "nixos-rebuild" {
		t.Errorf("step error = %+v", se)
	}
	if s, f, u := rep.Succeeded(), rep.Failed(), rep.Untouched(); strings.Join(s, ",") != "alpha" || strings.Join(f, ",") != "beta" || strings.Join(u, ",") != "gamma" {
		t.Errorf("succeeded %q failed %q untouched %q", s, f, u)
	}
	if want := "succeeded: alpha; failed: beta at step nixos-rebuild; not touched: gamma"; rep.Summary() != want {
		t.Errorf("summary = %q", rep.Summary())
	}
	notCalled(t, e.lab, "gamma")
	if n := e.lab.Target("gamma").Logins(); n != 0 {
		t.Errorf("gamma had %d logins", n)
	}
	if got := e.stored(dep.ID); got.State != nixdeploy.StateFailed || strings.Join(got.Hosts, ",") != "alpha,beta,gamma" {
		t.Errorf("stored = %+v", got)
	}
}

// TestBusy: a second deployment of a host in use is refused (by the
// lifecycle's claim, before the deployer runs anything) with an error
// that names the deployment holding it, and the deployer's Cancel still
// stops the first.
func TestBusy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{lab: sshlab.Options{Hosts: []string{"alpha", "beta"}}})
	e.lab.Set("nixos-rebuild.alpha.hang", "1")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan *nixdeploy.Deployment, 1)
	go func() {
		dep, _, _ := e.run(ctx, nixdeploy.ActionSwitch, []string{"alpha"})
		done <- dep
	}()
	e.lab.WaitFile(t.Context(), e.lab.PIDFile("nixos-rebuild", "alpha"), 20*time.Second)
	// The lifecycle claimed alpha in the database for the run.
	holder, _, busy, err := e.db.HostClaim(t.Context(), "alpha")
	if err != nil || !busy || holder == 0 {
		t.Fatalf("HostClaim(alpha) = %d, %v, %v", holder, busy, err)
	}
	_, rep, err := e.run(t.Context(), nixdeploy.ActionSwitch, []string{"beta", "alpha"})
	if !errors.Is(err, nixdeploy.ErrHostBusy) || rep != nil {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("deployment %d", holder)) {
		t.Errorf("error %q does not name deployment %d", err, holder)
	}
	if len(e.lab.CallsTo("nixos-rebuild")) != 1 {
		t.Errorf("calls: %q", e.lab.Calls())
	}
	if !e.d.Cancel(holder) {
		t.Error("Cancel did not find the running deployment")
	}
	dep := <-done
	if got := e.stored(dep.ID); got.State != nixdeploy.StateCancelled {
		t.Errorf("state = %s", got.State)
	}
	if _, _, busy, _ := e.db.HostClaim(t.Context(), "alpha"); busy {
		t.Error("alpha still claimed after the deployment ended")
	}
}

// TestVerify: verification judges the result, not the exit code.
func TestVerify(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		action  nixdeploy.Action
		control map[string]string
		fail    string // substring of the error; "" for success
		warn    bool
	}{
		{name: "degraded", action: nixdeploy.ActionSwitch,
			control: map[string]string{"systemctl.node1.state": "degraded", "systemctl.node1.failed": "nginx.service loaded failed failed nginx\nfoo.mount loaded failed failed Foo"},
			fail:    "node1 is degraded after switch; failed units: nginx.service, foo.mount"},
		{name: "switch unchanged warns", action: nixdeploy.ActionSwitch, control: map[string]string{"nixos-rebuild.nochange": "1"}, warn: true},
		{name: "rollback unchanged fails", action: nixdeploy.ActionRollback, control: map[string]string{"nixos-rebuild.nochange": "1"},
			fail: "rollback did not change the running system of node1"},
		{name: "rollback", action: nixdeploy.ActionRollback},
		{name: "boot keeps the system", action: nixdeploy.ActionBoot},
		{name: "dry-activate keeps the system", action: nixdeploy.ActionDryActivate},
		{name: "test", action: nixdeploy.ActionTest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envConfig{})
			for k, v := range tc.control {
				e.lab.Set(k, v)
			}
			_, rep, err := e.run(t.Context(), tc.action, []string{"node1"})
			if tc.fail == "" {
				if err != nil {
					t.Fatalf("%v\n%s", err, e.sink.text())
				}
			} else {
				if !errors.Is(err, deployer.ErrVerify) || !strings.Contains(err.Error(), tc.fail) {
					t.Fatalf("err = %v, want %q", err, tc.fail)
				}
				if se := asStepError(t, err); se.Step != "verify" {
					t.Errorf("failed at %s", se.Step)
				}
			}
			if got := len(rep.Hosts[0].Warnings) > 0; got != tc.warn {
				t.Errorf("warnings = %q", rep.Hosts[0].Warnings)
			}
			noBadCalls(t, e.lab)
			argv := e.lab.CallsTo("nixos-rebuild")[0]
			wantAction := "[" + string(tc.action) + "]"
			if tc.action == nixdeploy.ActionRollback {
				wantAction = "[switch] [--rollback]"
			}
			if !strings.HasPrefix(argv, "nixos-rebuild runner "+wantAction+" [--flake]") {
				t.Errorf("argv = %s", argv)
			}
		})
	}
}

// TestJumpHost: runner and target are reached through a ProxyJump host,
// each still checked against its own pinned key.
func TestJumpHost(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{lab: sshlab.Options{Jump: true}})
	if _, _, err := e.run(t.Context(), nixdeploy.ActionSwitch, []string{"node1"}); err != nil {
		t.Fatalf("%v\n%s", err, e.sink.text())
	}
	if e.lab.Jump.Logins() == 0 {
		t.Error("the jump host was not used")
	}
	if e.lab.Runner.Logins() == 0 || e.lab.Target("node1").Logins() == 0 {
		t.Error("runner or target not reached")
	}
}

// TestLocalRunner: with runner "local" the same plan runs as local
// processes, and a cancel kills the local process group.
func TestLocalRunner(t *testing.T) {
	e := newEnv(t, envConfig{cfg: func(c *nixdeploy.Config) { c.Runner.Address = "local" }})
	t.Setenv("PATH", e.lab.StubDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	before := e.lab.CurrentSystem("node1")
	if _, _, err := e.run(t.Context(), nixdeploy.ActionSwitch, []string{"node1"}); err != nil {
		t.Fatalf("%v\n%s", err, e.sink.text())
	}
	if e.lab.Runner.Logins() != 0 {
		t.Error("the SSH runner was used")
	}
	if e.lab.CurrentSystem("node1") == before {
		t.Error("the local nixos-rebuild did not run")
	}
	if c := e.lab.CallsTo("nixos-rebuild"); len(c) != 1 || !strings.HasPrefix(c[0], "nixos-rebuild ? [switch]") {
		t.Errorf("calls = %q", c)
	}

	e.lab.Set("nixos-rebuild.hang", "1")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, _, err := e.run(ctx, nixdeploy.ActionSwitch, []string{"node1"})
		done <- err
	}()
	pid := pidFrom(t, e.lab.WaitFile(t.Context(), e.lab.PIDFile("nixos-rebuild", "node1"), 20*time.Second))
	child := pidFrom(t, e.lab.WaitFile(t.Context(), e.lab.ChildPIDFile("nixos-rebuild", "node1"), 20*time.Second))
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if sshlab.Alive(pid) || sshlab.Alive(child) {
		t.Error("local processes survived the cancel")
	}
}

// TestLocalRunnerEnvironment: a local child sees only the allow-listed
// environment, never the bot's secrets, and a secret of the bot's that a
// child prints anyway is redacted in the sink and the stored log. Issue
// 15, attack 3: a nixos-rebuild that prints its environment.
func TestLocalRunnerEnvironment(t *testing.T) {
	e := newEnv(t, envConfig{cfg: func(c *nixdeploy.Config) { c.Runner.Address = "local" }})
	secrets := map[string]string{
		"SLACK_BOT_TOKEN":        "xoxb-9999-8888-env-test-token",
		"SLACK_SIGNING_SECRET":   "env-test-signing-secret-0123456789",
		"SLACK_APP_TOKEN":        "xapp-1-A0ENV-7777-env-test",
		"NIXDEPLOY_SSH_KEY":      "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAAenvtestkeybody\n-----END OPENSSH PRIVATE KEY-----\n",
		"NIXDEPLOY_AGE_IDENTITY": "# created: 2026-01-01\nAGE-SECRET-KEY-1ENVTESTQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ",
		"UNRELATED_TOKEN":        "some-other-credential-42",
	}
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	t.Setenv("NIX_PATH", "nixpkgs=/env/test/nixpkgs")
	t.Setenv("LC_TIME", "C.UTF-8")
	stubs := t.TempDir()
	script := "#!/bin/sh\nenv\necho \"leaked: " + secrets["SLACK_BOT_TOKEN"] + " " + secrets["SLACK_SIGNING_SECRET"] + "\"\nexit 1\n"
	if err := os.WriteFile(filepath.Join(stubs, "nixos-rebuild"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	// The lab's stubs (its nix answers the flake lock) behind this one.
	t.Setenv("PATH", stubs+string(os.PathListSeparator)+e.lab.StubDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	dep, _, err := e.run(t.Context(), nixdeploy.ActionSwitch, []string{"node1"})
	if err == nil {
		t.Fatal("the failing stub passed")
	}
	var stored strings.Builder
	for _, l := range e.storedLog(dep.ID) {
		stored.WriteString(l.Text + "\n")
	}
	for name, out := range map[string]string{"sink": e.sink.text(), "store": stored.String()} {
		for _, want := range []string{"NIX_PATH=nixpkgs=/env/test/nixpkgs", "LC_TIME=C.UTF-8", "PATH=" + stubs, "leaked: " + deployer.Redacted + " " + deployer.Redacted} {
			if !strings.Contains(out, want) {
				t.Errorf("%s lacks %q:\n%s", name, want, out)
			}
		}
		for k, v := range secrets {
			if strings.Contains(out, k+"=") {
				t.Errorf("%s: the child got %s", name, k)
			}
			for _, line := range strings.Split(v, "\n") {
				if len(line) > 8 && !strings.HasPrefix(line, "-----") && !strings.HasPrefix(line, "#") && strings.Contains(out, line) {
					t.Errorf("%s holds the value of %s", name, k)
				}
			}
		}
	}
}

// failingLogStore is the database with a disk that fills up: AppendLogs
// fails once it has stored after lines.
type failingLogStore struct {
	deployer.Store
	mu          sync.Mutex
	after, seen int
}

func (s *failingLogStore) AppendLogs(ctx context.Context, id int64, lines []nixdeploy.LogLine) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen+len(lines) > s.after {
		return errors.New("database or disk is full")
	}
	s.seen += len(lines)
	return s.Store.AppendLogs(ctx, id, lines)
}

// TestLogWriteFailureFailsDeployment: a switch that itself goes well but
// whose log stops being stored ends failed, in the report, the returned
// error (with a sentence for the channel) and the stored row; it is not
// reported a success with a partial log (issue 15, attack 5).
func TestLogWriteFailureFailsDeployment(t *testing.T) {
	var fs *failingLogStore
	e := newEnv(t, envConfig{opts: func(o *deployer.Options) {
		fs = &failingLogStore{Store: o.Store, after: 3}
		o.Store = fs
		o.FlushLines = 1
	}})
	dep, rep, err := e.run(t.Context(), nixdeploy.ActionSwitch, []string{"node1"})
	var le *deployer.LogError
	if !errors.As(err, &le) || !strings.Contains(le.UserMessage(), "could not be stored completely") {
		t.Fatalf("err = %v, want a LogError", err)
	}
	if rep == nil || rep.State != nixdeploy.StateFailed || rep.LogErr == nil {
		t.Fatalf("report = %+v", rep)
	}
	if got := e.stored(dep.ID); got.State != nixdeploy.StateFailed || !strings.Contains(got.Error, "store the log") {
		t.Errorf("stored row: state %s, error %q", got.State, got.Error)
	}
}

// TestJumpHostKeyMismatch: a wrong pinned key for the jump host aborts in
// its handshake: the error names the jump host and both fingerprints,
// nobody logged in on the jump host, and nothing ran on the runner or the
// target behind it.
func TestJumpHostKeyMismatch(t *testing.T) {
	t.Parallel()
	wrong := sshlab.NewPublicKey(t)
	e := newEnv(t, envConfig{lab: sshlab.Options{Jump: true}, cfg: func(c *nixdeploy.Config) {
		c.Runner.Jump.HostKey = string(ssh.MarshalAuthorizedKey(wrong))
		c.Runner.Jump.KnownHosts = ""
	}})
	_, _, err := e.run(t.Context(), nixdeploy.ActionSwitch, []string{"node1"})
	checkMismatch(t, err, "jump host", ssh.FingerprintSHA256(wrong), ssh.FingerprintSHA256(e.lab.Jump.HostKey))
	if n := e.lab.Jump.Logins(); n != 0 {
		t.Errorf("%d logins on the mismatched jump host", n)
	}
	if e.lab.Runner.Logins() != 0 || e.lab.Target("node1").Logins() != 0 {
		t.Error("the runner or the target was reached past a mismatched jump host")
	}
	if c := e.lab.Calls(); len(c) != 0 {
		t.Errorf("stubs ran: %q", c)
	}
}

// silentListener accepts TCP connections on loopback and never says a
// word, as a host whose sshd hangs before its banner; it counts them.
func silentListener(t *testing.T) (host string, port int, accepted *atomic.Int32) {
	return silentAfter(t, "", 0)
}

// silentAfter is silentListener that first forwards n connections to
// target, as a host that answers nixos-anywhere's ssh and then hangs in
// its new system's boot.
func silentAfter(t *testing.T, target string, n int) (host string, port int, accepted *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = new(atomic.Int32)
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			if n > 0 {
				n--
				up, err := net.Dial("tcp", target)
				if err != nil {
					c.Close()
					continue
				}
				conns = append(conns, up)
				go func() { io.Copy(up, c); up.Close() }()
				go func() { io.Copy(c, up); c.Close() }()
				continue
			}
			accepted.Add(1)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	a := ln.Addr().(*net.TCPAddr)
	return a.IP.String(), a.Port, accepted
}

// TestHandshakeTimeout: a target that accepts the connection and stays
// silent fails the connect with the handshake timeout, and wait-for-ssh
// retries it rather than spending its whole budget on one attempt.
func TestHandshakeTimeout(t *testing.T) {
	t.Parallel()
	host, port, _ := silentListener(t)
	silent := func(c *nixdeploy.Config) {
		for i := range c.Hosts {
			if c.Hosts[i].Name == "node1" {
				c.Hosts[i].Address, c.Hosts[i].Port = host, port
			}
		}
	}
	// The real sshds of the lab (the runner) must pass the same timeout
	// on a loaded machine, so it is not tiny.
	short := func(o *deployer.Options) {
		o.ConnectTimeout = 1500 * time.Millisecond
		o.Timeouts.WaitSSH = 10 * time.Second
	}
	t.Run("connect", func(t *testing.T) {
		e := newEnv(t, envConfig{cfg: silent, opts: short})
		_, _, err := e.run(t.Context(), nixdeploy.ActionSwitch, []string{"node1"})
		if err == nil || !strings.Contains(err.Error(), "connect to node1") || !strings.Contains(err.Error(), "no SSH handshake within 1.5s") {
			t.Fatalf("err = %v, want the handshake timeout", err)
		}
		if c := e.lab.CallsTo("nixos-rebuild"); len(c) != 0 {
			t.Errorf("nixos-rebuild ran: %q", c)
		}
	})
	t.Run("wait-for-ssh", func(t *testing.T) {
		// The lab's nixos-anywhere reaches the target with real ssh, as
		// the real one does: its one connection gets the real sshd, and
		// the host stays silent from then on.
		var host string
		var port int
		var accepted *atomic.Int32
		e := newEnv(t, envConfig{cfg: func(c *nixdeploy.Config) {}, opts: short})
		host, port, accepted = silentAfter(t, e.lab.Target("node1").Addr, 1)
		for i := range e.cfg.Hosts {
			if e.cfg.Hosts[i].Name == "node1" {
				e.cfg.Hosts[i].Address, e.cfg.Hosts[i].Port = host, port
			}
		}
		before := accepted.Load()
		_, _, err := e.run(t.Context(), nixdeploy.ActionInstall, []string{"node1"})
		var se *deployer.StepError
		if !errors.As(err, &se) || se.Step != "wait-for-ssh" {
			t.Fatalf("err = %v, want a failure in wait-for-ssh", err)
		}
		// 10 s of budget, 1.5 s per silent attempt plus backoff: several
		// attempts, where a missing handshake timeout makes one.
		if n := accepted.Load() - before; n < 3 {
			t.Errorf("wait-for-ssh tried %d times in its budget, want it to retry", n)
		}
		if !strings.Contains(e.sink.text(), "no SSH handshake within 1.5s") {
			t.Errorf("no attempt reported the handshake timeout:\n%s", e.sink.text())
		}
	})
}

// TestKeyUploadUmask: the host key is never readable by others, not even
// between its creation and its chmod: a cat shim first on the runner's
// PATH records the mode of the file it is about to fill, and it is 0600
// for every upload (umask 077 at creation, not only the final chmod).
func TestKeyUploadUmask(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{})
	realCat, err := exec.LookPath("cat")
	if err != nil {
		t.Fatal(err)
	}
	modes := filepath.Join(t.TempDir(), "modes")
	shim := "#!/bin/sh\nif [ -f /proc/$$/fd/1 ]; then stat -L -c %a /proc/$$/fd/1 >>" + modes + "; fi\nexec " + realCat + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(e.lab.StubDir, "cat"), []byte(shim), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.run(t.Context(), nixdeploy.ActionInstall, []string{"node1"}); err != nil {
		t.Fatalf("%v\n%s", err, e.sink.text())
	}
	b, err := os.ReadFile(modes)
	if err != nil {
		t.Fatalf("the cat shim never wrote a file: %v", err)
	}
	got := strings.Fields(string(b))
	if len(got) < 2 {
		t.Fatalf("modes recorded: %q, want one per uploaded file", got)
	}
	for _, m := range got {
		if m != "600" {
			t.Errorf("an uploaded file was created with mode %s before its chmod, want 600 (all: %q)", m, got)
		}
	}
}

// TestLogWriteFailureHaltsBatch: once the first host's log could not be
// stored, a batch does not start the next host.
func TestLogWriteFailureHaltsBatch(t *testing.T) {
	e := newEnv(t, envConfig{lab: sshlab.Options{Hosts: []string{"node1", "node2"}}, opts: func(o *deployer.Options) {
		o.Store = &failingLogStore{Store: o.Store, after: 3}
		o.FlushLines = 1
	}})
	_, rep, err := e.run(t.Context(), nixdeploy.ActionSwitch, []string{"node1", "node2"})
	var le *deployer.LogError
	if !errors.As(err, &le) {
		t.Fatalf("err = %v, want a LogError", err)
	}
	if rep == nil || len(rep.Hosts) != 2 || rep.Hosts[1].Outcome != deployer.OutcomeUntouched || rep.State != nixdeploy.StateFailed {
		t.Fatalf("report = %+v", rep)
	}
	if e.lab.Target("node2").Logins() != 0 || len(e.lab.CallsTo("nixos-rebuild")) != 1 {
		t.Errorf("node2 was touched after node1's log failed: %q", e.lab.CallsTo("nixos-rebuild"))
	}
}
