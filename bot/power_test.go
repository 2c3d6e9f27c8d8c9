package bot_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/bmc"
	"github.com/nixdeploy/nixdeploy/bot"
	"github.com/nixdeploy/nixdeploy/deployer"
	"github.com/nixdeploy/nixdeploy/internal/bmcfake"
)

const bmcPassword = "turing-pi-secret-pw"

// bmcHarness is the harness with rk1-node1 in slot 1 of a fake Turing Pi
// board, reached through the real bmc client.
func bmcHarness(t *testing.T, fo bmcfake.Options, o harnessOptions) (*harness, *bmcfake.BMC) {
	t.Helper()
	fo.User, fo.Password = "root", bmcPassword
	fake := bmcfake.New(fo)
	t.Cleanup(fake.Close)
	cfg := testConfig(t, func(s string) string {
		s = strings.Replace(s, `tags = ["rk1"]`, "tags = [\"rk1\"]\nbmc = \"turingpi\"\nbmc_node = 1", 1)
		return s + "\n[[bmcs]]\nname = \"turingpi\"\naddress = \"" + fake.Address() + "\"\nuser = \"root\"\ncert_sha256 = \"" +
			nixdeploy.FormatFingerprint(fake.Fingerprint()) + "\"\n"
	})
	env := map[string]string{"NIXDEPLOY_BMC_PASSWORD_TURINGPI": bmcPassword}
	fleet, err := bmc.NewFleet(cfg, bmc.FleetOptions{
		Getenv: func(k string) string { return env[k] },
		Redact: func(s string) string { return deployer.RedactText(cfg, s) },
		Client: bmc.Options{Timeout: 10 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	o.cfg, o.bmc = cfg, fleet
	return newHarness(t, o), fake
}

// waitFor waits, without sleeping, until cond holds after a Slack call.
func waitFor(t *testing.T, h *harness, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for {
		changed := h.slack.Changed()
		if cond() {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func setRequests(f *bmcfake.BMC) int {
	n := 0
	for _, r := range f.Requests() {
		if r.Query.Get("opt") == "set" {
			n++
		}
	}
	return n
}

func TestPowerStatusForEveryone(t *testing.T) {
	h, _ := bmcHarness(t, bmcfake.Options{Power: [4]bool{true}}, harnessOptions{})
	h.command(eve, "power rk1-node1 status")
	if got := h.ephemerals(eve); len(got) != 1 || got[0] != "rk1-node1 is powered on (slot 1 of turingpi)." {
		t.Errorf("eve was told %q", got)
	}
}

func TestPowerNeedsDeployer(t *testing.T) {
	h, fake := bmcHarness(t, bmcfake.Options{Power: [4]bool{true}}, harnessOptions{})
	for _, op := range []string{"off", "reset", "on"} {
		h.command(eve, "power rk1-node1 "+op)
	}
	h.command(eve, "uart rk1-node1")
	got := h.ephemerals(eve)
	if len(got) != 4 || !anyContains(got, "only deployers may switch a node's power") || !anyContains(got, "only deployers may read a node's serial console") {
		t.Errorf("eve was told %q", got)
	}
	if n := len(fake.Requests()); n != 0 {
		t.Errorf("%d requests reached the BMC for a non-deployer", n)
	}
	if !fake.Power(1) {
		t.Error("slot 1 was switched off")
	}
	if kinds := h.auditKinds(0); !contains(kinds, eve+" refused-not-deployer") {
		t.Errorf("audit %v", kinds)
	}
}

func TestPowerResetAudited(t *testing.T) {
	var resets []int
	var mu sync.Mutex
	h, fake := bmcHarness(t, bmcfake.Options{Power: [4]bool{true}, OnReset: func(n int) { mu.Lock(); resets = append(resets, n); mu.Unlock() }}, harnessOptions{})
	h.command(alice, "power rk1-node1 reset")
	mu.Lock()
	if len(resets) != 1 || resets[0] != 1 {
		t.Errorf("resets %v, want slot 1 once", resets)
	}
	mu.Unlock()
	var notice string
	for _, m := range h.slack.Messages() {
		if !m.Ephemeral && m.Channel == channel {
			notice = m.Rendered()
		}
	}
	if !strings.Contains(notice, "rk1-node1 power-cycled by <@"+alice+"> (slot 1 of turingpi); it is on now") {
		t.Errorf("channel notice %q", notice)
	}
	kinds := h.auditKinds(0)
	if !contains(kinds, alice+" power-requested") || !contains(kinds, alice+" power-reset") {
		t.Errorf("audit %v", kinds)
	}
	h.command(bob, "power rk1-node1 off")
	if fake.Power(1) {
		t.Error("slot 1 is still on after power off")
	}
	if kinds := h.auditKinds(0); !contains(kinds, bob+" power-off") {
		t.Errorf("audit %v", kinds)
	}
}

// TestPowerRefusedWhileBusy: on, off and reset wait for a free host, like
// a deployment: none in flight, no one else's lock.
func TestPowerRefusedWhileBusy(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	started := make(chan nixdeploy.Deployment, 1)
	h, fake := bmcHarness(t, bmcfake.Options{Power: [4]bool{true}}, harnessOptions{started: started,
		script: func(ctx context.Context, dep nixdeploy.Deployment, emit func(string, nixdeploy.Stream, string)) bot.Result {
			<-release
			return bot.Result{State: nixdeploy.StateSucceeded}
		}})
	h.slash(alice, "switch rk1-node1")
	t.Cleanup(unblock)
	<-started
	h.slash(bob, "power rk1-node1 reset")
	waitFor(t, h, "bob's refusal", func() bool { return len(h.ephemerals(bob)) == 1 })
	if got := h.ephemerals(bob)[0]; !strings.Contains(got, "rk1-node1 is busy with deployment #1") {
		t.Errorf("bob was told %q", got)
	}
	unblock()
	h.settle()

	h.command(carol, "lock rk1-node1 1h reseating the module")
	h.command(bob, "power rk1-node1 off")
	h.command(bob, "power rk1-node1 on")
	if got := h.ephemerals(bob); len(got) != 3 || !strings.Contains(got[1], "rk1-node1 is locked by <@"+carol+">") || !strings.Contains(got[2], "rk1-node1 is locked by <@"+carol+">") {
		t.Errorf("bob was told %q", got)
	}
	if n := setRequests(fake); n != 0 {
		t.Errorf("%d power changes reached the BMC on a busy host", n)
	}
	// The lock holder may.
	h.command(carol, "power rk1-node1 off")
	if fake.Power(1) {
		t.Error("the lock holder's power off did not happen")
	}
}

// TestDeployRefusedDuringReset: a power operation holds its host.
func TestDeployRefusedDuringReset(t *testing.T) {
	inReset := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	h, _ := bmcHarness(t, bmcfake.Options{Power: [4]bool{true}, OnReset: func(int) { close(inReset); <-release }}, harnessOptions{})
	// Registered after the harness, so it runs before the harness's
	// cleanup waits for the blocked reset, even when the test fails.
	t.Cleanup(unblock)
	h.slash(alice, "power rk1-node1 reset")
	<-inReset
	h.slash(bob, "switch rk1-node1")
	h.slash(carol, "power rk1-node1 off")
	waitFor(t, h, "the refusals", func() bool { return len(h.ephemerals(bob)) == 1 && len(h.ephemerals(carol)) == 1 })
	unblock()
	h.settle()
	for _, u := range []string{bob, carol} {
		if got := h.ephemerals(u)[0]; !strings.Contains(got, "rk1-node1 is busy: power reset by <@"+alice+"> is in progress") {
			t.Errorf("%s was told %q", u, got)
		}
	}
	deps, err := h.db.Deployments(t.Context(), "rk1-node1", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(deps) != 0 {
		t.Errorf("deployments %v were stored during the reset", deps)
	}
}

func TestUARTThread(t *testing.T) {
	h, fake := bmcHarness(t, bmcfake.Options{}, harnessOptions{})
	var console strings.Builder
	for i := range 250 {
		console.WriteString("[    1.000] line ")
		console.WriteString(strings.Repeat("x", i%7))
		console.WriteString("\r\n")
	}
	console.WriteString("\x1b[0;32m[  OK  ]\x1b[0m Reached target Multi-User System.\r\n")
	console.WriteString("oops AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ\r\n")
	console.WriteString("typed the BMC password " + bmcPassword + "\r\n")
	console.WriteString("rk1-node1 login: \r\n\r\n")
	fake.WriteUART(1, console.String())

	h.command(alice, "uart rk1-node1")
	var notice string
	var ts string
	for _, m := range h.slack.Messages() {
		if !m.Ephemeral && strings.Contains(m.Rendered(), "Serial console of rk1-node1") {
			notice, ts = m.Rendered(), m.TS
		}
	}
	if !strings.Contains(notice, "last 200 lines") || !strings.Contains(notice, "[  OK  ] Reached target Multi-User System.") || !strings.Contains(notice, "rk1-node1 login:") {
		t.Errorf("notice %q", notice)
	}
	files := h.slack.Files()
	if len(files) != 1 || files[0].ThreadTS != ts || files[0].Channel != channel {
		t.Fatalf("files %+v, want one in the thread of %s", files, ts)
	}
	body := string(files[0].Content)
	if n := strings.Count(body, "\n"); n != 200 {
		t.Errorf("thread file has %d lines, want 200", n)
	}
	for _, leak := range []string{"AGE-SECRET-KEY-1QQ", bmcPassword, "\x1b", "\r"} {
		if strings.Contains(notice+body, leak) {
			t.Errorf("%q reached Slack", leak)
		}
	}
	if !strings.Contains(body, "oops [REDACTED]") {
		t.Errorf("the secret line is missing its redaction:\n%s", body[len(body)-300:])
	}
	if kinds := h.auditKinds(0); !contains(kinds, alice+" uart") {
		t.Errorf("audit %v", kinds)
	}
}

func TestUARTEmpty(t *testing.T) {
	h, _ := bmcHarness(t, bmcfake.Options{}, harnessOptions{})
	h.command(alice, "uart rk1-node1")
	if got := h.ephemerals(alice); len(got) != 1 || !strings.Contains(got[0], "serial console of rk1-node1 is empty") {
		t.Errorf("alice was told %q", got)
	}
}

// TestBMCErrorsForUsers: a pin mismatch is one sentence naming the board,
// and the password appears nowhere.
func TestBMCErrorsForUsers(t *testing.T) {
	h, fake := bmcHarness(t, bmcfake.Options{}, harnessOptions{})
	fake.Close() // nothing answers
	h.command(alice, "power rk1-node1 reset")
	got := h.ephemerals(alice)
	if len(got) != 1 || !strings.Contains(got[0], "nixdeploy could not reach the BMC turingpi for reset node 1") {
		t.Errorf("alice was told %q", got)
	}
	if kinds := h.auditKinds(0); !contains(kinds, alice+" power-failed") {
		t.Errorf("audit %v", kinds)
	}
}

func TestNoBMCWired(t *testing.T) {
	cfg := testConfig(t, func(s string) string {
		return strings.Replace(s, `tags = ["rk1"]`, "tags = [\"rk1\"]\nbmc = \"turingpi\"\nbmc_node = 1", 1) +
			"\n[[bmcs]]\nname = \"turingpi\"\naddress = \"127.0.0.1\"\nuser = \"root\"\ncert_sha256 = \"" + strings.Repeat("ab", 32) + "\"\n"
	})
	h := newHarness(t, harnessOptions{cfg: cfg})
	h.command(alice, "power rk1-node1 status")
	if got := h.ephemerals(alice); len(got) != 1 || !strings.Contains(got[0], "no Turing Pi BMC is wired into this nixdeploy") {
		t.Errorf("alice was told %q", got)
	}
}
