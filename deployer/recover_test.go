package deployer_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/bmc"
	"github.com/nixdeploy/nixdeploy/deployer"
	"github.com/nixdeploy/nixdeploy/internal/bmcfake"
	"github.com/nixdeploy/nixdeploy/internal/sshlab"
	"github.com/nixdeploy/nixdeploy/runs"
)

// hangingNode is node1 of a lab sitting in slot 1 of a fake Turing Pi
// BMC: it hangs right after activation (its sshd is killed, every
// connection with it), and the BMC's reset brings it back (starts its
// sshd again) only when comesBack.
type hangingNode struct {
	e    *env
	fake *bmcfake.BMC

	mu        sync.Mutex
	comesBack bool
	hung      bool
	resets    int
	// afterReset, if set, runs after each reset.
	afterReset func()
	// uartRead, if set, runs when the console is read.
	uartRead func()
}

func newHangingNode(t *testing.T, comesBack bool) *hangingNode {
	t.Helper()
	return newHangingNodeIn(t, comesBack, sshlab.Options{})
}

func newHangingNodeIn(t *testing.T, comesBack bool, lab sshlab.Options) *hangingNode {
	t.Helper()
	n := &hangingNode{comesBack: comesBack}
	n.fake = bmcfake.New(bmcfake.Options{User: "root", Password: "bmc-password-1", Power: [4]bool{true}, OnReset: n.onReset, OnUART: n.onUART})
	t.Cleanup(n.fake.Close)
	n.e = newEnv(t, envConfig{
		lab: lab,
		cfg: func(c *nixdeploy.Config) {
			c.BMCs = []nixdeploy.BMC{{Name: "turingpi", Address: n.fake.Address(), User: "root", CertSHA256: nixdeploy.FormatFingerprint(n.fake.Fingerprint())}}
			c.Hosts[0].BMC, c.Hosts[0].BMCNode = "turingpi", 1
		},
		opts: func(o *deployer.Options) {
			fleet, err := bmc.NewFleet(o.Config, bmc.FleetOptions{Getenv: func(string) string { return "bmc-password-1" }})
			if err != nil {
				t.Fatal(err)
			}
			o.BMC = fleet
			o.Timeouts.WaitSSH = 3 * time.Second
		},
	})
	n.fake.WriteUART(1, "\x1b[32m[  OK  ]\x1b[0m Reached target Multi-User System.\r\n")
	return n
}

func (n *hangingNode) onUART(int) {
	n.mu.Lock()
	f := n.uartRead
	n.mu.Unlock()
	if f != nil {
		f()
	}
}

func (n *hangingNode) onReset(slot int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.resets++
	if n.afterReset != nil {
		defer n.afterReset()
	}
	if !n.comesBack {
		n.fake.WriteUART(slot, "Kernel panic - not syncing: Attempted to kill init!\r\n")
		return
	}
	n.fake.WriteUART(slot, "U-Boot 2017.09\r\n<<< NixOS Stage 1 >>>\r\nnode1 login: \r\n")
	if err := n.e.lab.Target("node1").Restart(); err != nil {
		n.e.t.Errorf("restart node1's sshd: %v", err)
	}
}

// Line hangs the node when nixos-rebuild reports the activation: sinks
// are called before the step ends (the step waits for them), so verify
// finds the node gone.
func (n *hangingNode) Line(l nixdeploy.LogLine) {
	if !strings.Contains(l.Text, "activating the configuration") {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.hung {
		return
	}
	n.hung = true
	n.fake.WriteUART(1, "rcu: INFO: rcu_sched detected stalls on CPUs/tasks:\r\n")
	n.e.lab.Target("node1").Kill()
}

func (n *hangingNode) run(t *testing.T, recover nixdeploy.Recover) (*nixdeploy.Deployment, *deployer.Report, error) {
	t.Helper()
	return n.runCtx(t.Context(), recover)
}

func (n *hangingNode) runCtx(ctx context.Context, recover nixdeploy.Recover) (*nixdeploy.Deployment, *deployer.Report, error) {
	dep := &nixdeploy.Deployment{Hosts: []string{"node1"}, Action: nixdeploy.ActionSwitch, Requester: "schedule:nightly", Source: nixdeploy.SourceSchedule, Recover: recover}
	rep, err := runs.New(n.e.db, n.e.d).Run(ctx, dep, n.e.sink, n)
	return dep, rep, err
}

func (n *hangingNode) resetRequests() int {
	c := 0
	for _, r := range n.fake.Requests() {
		if r.Query.Get("type") == "reset" {
			c++
		}
	}
	return c
}

func TestRecoverySucceedsAfterPowerReset(t *testing.T) {
	n := newHangingNode(t, true)
	dep, rep, err := n.run(t, nixdeploy.RecoverPowerReset)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, n.e.sink.text())
	}
	if !n.hung {
		t.Fatal("the node never hung: the test did not test recovery")
	}
	if n.resetRequests() != 1 || n.resets != 1 {
		t.Errorf("%d reset requests, %d resets, want 1", n.resetRequests(), n.resets)
	}
	h := rep.Hosts[0]
	if h.Outcome != deployer.OutcomeSucceeded || h.Recovery != deployer.RecoveredText {
		t.Errorf("host report %+v", h)
	}
	if !strings.Contains(rep.Summary(), "node1 recovered after a power reset") {
		t.Errorf("summary %q does not say it recovered", rep.Summary())
	}
	if dep.State != nixdeploy.StateSucceeded {
		t.Errorf("state %s", dep.State)
	}
	log := n.e.sink.text()
	for _, want := range []string{
		"node1 cannot be reached after step verify",
		"console| [  OK  ] Reached target Multi-User System.",
		"console| rcu: INFO: rcu_sched detected stalls",
		"power-cycled node1 through the BMC",
		"node1 is up and presents its pinned host key",
		"node1 recovered after a power reset through its BMC and passed verification",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if got := stepNames(n.e.steps(dep.ID)); !strings.Contains(got, "verify remove-tmp recover") {
		t.Errorf("steps %q lack the recovery after the failed verify", got)
	}
}

func TestRecoveryFailsWhenNodeStaysDown(t *testing.T) {
	n := newHangingNode(t, false)
	dep, rep, err := n.run(t, nixdeploy.RecoverPowerReset)
	var re *deployer.RecoveryError
	if !errors.As(err, &re) {
		t.Fatalf("error %v (%T), want a *RecoveryError\n%s", err, err, n.e.sink.text())
	}
	// One reset and no more, however long the node stays down.
	if n.resetRequests() != 1 || n.resets != 1 {
		t.Errorf("%d reset requests, %d resets, want exactly 1", n.resetRequests(), n.resets)
	}
	if !errors.Is(err, nixdeploy.ErrStepTimeout) && !errors.Is(err, nixdeploy.ErrConnectionLost) {
		// The wait's timeout, or the lost connection that started it.
		t.Logf("error kinds: %v", err)
	}
	h := rep.Hosts[0]
	if h.Outcome != deployer.OutcomeFailed || h.Step != "recover" || h.Recovery != deployer.StillDownText {
		t.Errorf("host report %+v", h)
	}
	msg := re.UserMessage()
	for _, want := range []string{"node1 could not be reached after activation and is still down after a power reset through its BMC (slot 1 of turingpi)", "Kernel panic - not syncing"} {
		if !strings.Contains(msg, want) {
			t.Errorf("user message %q lacks %q", msg, want)
		}
	}
	if !strings.Contains(rep.Summary(), "node1 still down after a power reset") {
		t.Errorf("summary %q", rep.Summary())
	}
	if dep.State != nixdeploy.StateFailed {
		t.Errorf("state %s", dep.State)
	}
	if !strings.Contains(n.e.sink.text(), "console| Kernel panic") {
		t.Errorf("log lacks the console after the reset:\n%s", n.e.sink.text())
	}
}

// A deployment whose schedule does not say recover = "power-reset" (or a
// terminal one) gets the console tail, and no reset.
func TestUnreachableWithoutRecoverOnlyReadsConsole(t *testing.T) {
	n := newHangingNode(t, true)
	_, rep, err := n.run(t, nixdeploy.RecoverNone)
	if err == nil {
		t.Fatal("a hung node succeeded")
	}
	if n.resetRequests() != 0 {
		t.Errorf("%d reset requests without recover", n.resetRequests())
	}
	if h := rep.Hosts[0]; h.Step != "verify" || h.Recovery != "" {
		t.Errorf("host report %+v", h)
	}
	log := n.e.sink.text()
	if !strings.Contains(log, "console| rcu: INFO: rcu_sched detected stalls") || !strings.Contains(log, "not power-cycling node1") {
		t.Errorf("log:\n%s", log)
	}
}

// A cancel while the node is waited for after its reset ends the
// deployment cancelled, not "still down".
func TestRecoveryCancelled(t *testing.T) {
	n := newHangingNode(t, false)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	n.afterReset = cancel
	dep, rep, err := n.runCtx(ctx, nixdeploy.RecoverPowerReset)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want cancelled\n%s", err, n.e.sink.text())
	}
	var re *deployer.RecoveryError
	if errors.As(err, &re) {
		t.Errorf("a cancelled recovery reads as still down: %v", err)
	}
	if h := rep.Hosts[0]; h.Outcome != deployer.OutcomeCancelled || h.Recovery != "" {
		t.Errorf("host report %+v", h)
	}
	if dep.State != nixdeploy.StateCancelled {
		t.Errorf("state %s", dep.State)
	}
}

// A host on a board whose BMC is not wired in (no password in the
// environment) is reported with the reason, and nothing else happens.
func TestUnreachableWithoutBMCSaysWhy(t *testing.T) {
	n := newHangingNode(t, true)
	opts := n.e.opts
	opts.BMC = nil
	d, err := deployer.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	n.e.d = d
	_, rep, err := n.run(t, nixdeploy.RecoverPowerReset)
	if err == nil || rep.Hosts[0].Step != "verify" {
		t.Fatalf("run: %v, %+v", err, rep.Hosts)
	}
	if !strings.Contains(n.e.sink.text(), "no BMC is wired into nixdeploy to read its console or reset it (is NIXDEPLOY_BMC_PASSWORD_TURINGPI set?)") {
		t.Errorf("log:\n%s", n.e.sink.text())
	}
	if len(n.fake.Requests()) != 0 {
		t.Error("the BMC was reached without being wired in")
	}
}

// Through a jump host that died, the node cannot be told from a hung one:
// its console goes into the log, but it is not power-cycled.
func TestNoResetWhenTheJumpHostIsDown(t *testing.T) {
	n := newHangingNodeIn(t, true, sshlab.Options{Jump: true})
	// The jump host dies once the node hangs: the recovery reads the
	// console first, then checks the jump host.
	n.uartRead = n.e.lab.Jump.Kill
	_, rep, err := n.run(t, nixdeploy.RecoverPowerReset)
	if err == nil || rep.Hosts[0].Step != "verify" {
		t.Fatalf("run: %v, %+v\n%s", err, rep.Hosts, n.e.sink.text())
	}
	if n.resetRequests() != 0 {
		t.Errorf("%d resets of a node behind a dead jump host", n.resetRequests())
	}
	log := n.e.sink.text()
	if !strings.Contains(log, "console| rcu: INFO") || !strings.Contains(log, "not power-cycling node1: the jump host cannot be reached either") {
		t.Errorf("log:\n%s", log)
	}
}

// Through a jump host that answers, a hung node is reset as usual.
func TestRecoveryThroughJumpHost(t *testing.T) {
	n := newHangingNodeIn(t, true, sshlab.Options{Jump: true})
	_, rep, err := n.run(t, nixdeploy.RecoverPowerReset)
	if err != nil || rep.Hosts[0].Recovery != deployer.RecoveredText || n.resetRequests() != 1 {
		t.Fatalf("run: %v, %+v, %d resets\n%s", err, rep.Hosts, n.resetRequests(), n.e.sink.text())
	}
}
