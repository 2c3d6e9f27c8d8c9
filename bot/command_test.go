package bot_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/bot"
	"github.com/nixdeploy/nixdeploy/commands"
)

// TestBusyHost: a second request for a host with a deployment in flight,
// or for a host someone else locked, is refused with who and why.
func TestBusyHost(t *testing.T) {
	release := make(chan struct{})
	started := make(chan nixdeploy.Deployment, 2)
	h := newHarness(t, harnessOptions{started: started, script: func(ctx context.Context, dep nixdeploy.Deployment, emit func(string, nixdeploy.Stream, string)) bot.Result {
		<-release
		return bot.Result{State: nixdeploy.StateSucceeded}
	}})
	h.slash(alice, "switch ganon")
	<-started
	h.slash(bob, "boot ganon")
	h.slash(bob, "lock rk1-node1 2h replacing the fan")

	// Wait for the two replies without waiting for the held deployment.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for {
		changed := h.slack.Changed()
		if len(h.ephemerals(bob)) >= 1 && len(h.slack.Calls("chat.postMessage")) >= 2 {
			break
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("no reply: %v", h.ephemerals(bob))
		}
	}
	if got := h.ephemerals(bob); !strings.Contains(got[0], "ganon is busy with deployment #1 (switch by <@"+alice+">)") {
		t.Errorf("bob was told %q", got)
	}
	close(release)
	h.settle()

	h.command(alice, "switch rk1-node1")
	if got := h.ephemerals(alice); len(got) != 1 || !strings.Contains(got[0], "rk1-node1 is locked by <@"+bob+"> until 2026-11-27 00:00 UTC (replacing the fan)") {
		t.Errorf("alice was told %q", got)
	}
	// The holder may still deploy, and the channel is told.
	h.command(bob, "switch rk1-node1")
	if d := h.deployment(2); d.Hosts[0] != "rk1-node1" || d.Requester != bob {
		t.Errorf("the lock holder's deployment = %+v", d)
	}
	announced := false
	for _, m := range h.slack.Messages() {
		if !m.Ephemeral && strings.Contains(m.Rendered(), "#2 switch by <@"+bob+"> goes through their own lock on rk1-node1") {
			announced = true
		}
	}
	if !announced {
		t.Error("the lock holder's switch through their lock was not announced in the channel")
	}
	kinds := h.auditKinds(0)
	if !contains(kinds, bob+" refused-busy") || !contains(kinds, alice+" refused-busy") || !contains(kinds, bob+" locked") {
		t.Errorf("audit %v", kinds)
	}
}

// TestStatus shows the board: the last deployment and outcome, locks with
// holder, and, from a deployer that cannot read hosts, systems unknown.
func TestStatus(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.command(alice, "switch ganon")
	if err := h.db.SetRevision(t.Context(), 1, "5f3c9a1e7b2d4c6e8a0b1d3f5e7c9a2b4d6f8e01"); err != nil {
		t.Fatal(err)
	}
	h.command(bob, "lock rk1-node1 3d waiting for a new eMMC <yes>")
	h.command(carol, "status")
	got := h.ephemerals(carol)
	if len(got) != 1 {
		t.Fatalf("replies %q", got)
	}
	rows := boardRows(t, h, carol, 0)
	if rows["ganon"][5] != "#1 switch succeeded at 5f3c9a1e7b2d" || rows["ganon"][6] != "free" {
		t.Errorf("ganon row %q", rows["ganon"])
	}
	if rows["rk1-node1"][5] != "never" || rows["ganon"][4] != "unknown: this nixdeploy cannot read hosts" {
		t.Errorf("rows %q", rows)
	}

	// A deployment another process runs on the same database holds ganon.
	if err := h.db.ClaimHosts(t.Context(), 99, []string{"ganon"}); err != nil {
		t.Fatal(err)
	}
	h.command(carol, "status ganon")
	if rows := boardRows(t, h, carol, 1); rows["ganon"][6] != "#99 running" {
		t.Errorf("ganon claimed by #99: %q", rows["ganon"])
	}

	h.command(bob, "lock rk1-node1 3d waiting for a new eMMC")
	h.command(carol, "status rk1-node1")
	rows = boardRows(t, h, carol, 2)
	if len(rows) != 1 || rows["rk1-node1"][6] != "locked by @"+bob+" until 2026-11-29 22:00 UTC" {
		t.Errorf("status rk1-node1: %q", rows)
	}
	h.command(carol, "unlock rk1-node1")
	if got := h.ephemerals(carol); !strings.Contains(got[3], "only they or an approver can unlock it") {
		t.Errorf("carol unlocking bob's lock: %q", got[3])
	}
	h.command(alice, "unlock rk1-node1")
	if _, ok, _ := h.db.HostLockOf(t.Context(), "rk1-node1"); ok {
		t.Error("an approver could not unlock")
	}

	h.command(carol, "history ganon")
	if got := h.ephemerals(carol); !strings.Contains(got[4], "#1 switch ganon — :white_check_mark: succeeded") {
		t.Errorf("history:\n%s", got[4])
	}
}

// TestAckAndHelp: a parse error is the ack itself (one sentence, nothing
// runs); help is answered after the ack.
func TestAckAndHelp(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	if got := h.command(alice, "instal ganon"); !strings.Contains(got, `unknown command or host "instal"`) {
		t.Errorf("ack of a typo = %q", got)
	}
	if got := h.command(alice, "switch ganon; rm -rf /"); !strings.Contains(got, "not allowed") {
		t.Errorf("ack of shell text = %q", got)
	}
	if got := h.command(eve, "help"); got != "`/nixdeploy help`" {
		t.Errorf("ack of help = %q", got)
	}
	if got := h.ephemerals(eve); len(got) != 1 || !strings.Contains(got[0], "/nixdeploy install HOST") {
		t.Errorf("help reply %q", got)
	}
	if n := len(h.slack.Calls("chat.postMessage")); n != 0 {
		t.Errorf("%d messages posted for refused commands", n)
	}
}

type fakeSchedules struct {
	paused map[string]string
	runs   int64
}

func (f *fakeSchedules) List(context.Context) ([]nixdeploy.ScheduleStatus, error) {
	return []nixdeploy.ScheduleStatus{{Name: "nightly-rk1", Spec: "0 3 * * *", TimeZone: "Europe/Berlin", Hosts: []string{"rk1-node1"},
		Action: nixdeploy.ActionSwitch, Strategy: "rolling", Paused: f.paused["nightly-rk1"] != "", PausedBy: f.paused["nightly-rk1"],
		Next: time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC), Last: &nixdeploy.ScheduleRun{Outcome: "succeeded", StartedAt: time.Date(2026, 11, 26, 2, 0, 0, 0, time.UTC)}}}, nil
}
func (f *fakeSchedules) Pause(_ context.Context, name, by string) error {
	f.paused[name] = by
	return nil
}
func (f *fakeSchedules) Resume(_ context.Context, name, by string) error {
	delete(f.paused, name)
	return nil
}
func (f *fakeSchedules) RunNow(context.Context, string, string) (int64, error) {
	f.runs++
	return f.runs, nil
}

type fakeKeys struct{}

func (fakeKeys) CheckKeys(_ context.Context, hosts []string) (bot.KeyReport, error) {
	return bot.KeyReport{Table: "host key pub\n" + strings.Join(hosts, " ✓ ✓\n") + " ✓ ✗", Failures: []string{hosts[len(hosts)-1] + ": the .pub file does not match the private key"}}, nil
}

// TestSchedulesAndKeys: schedule and key commands reach their interfaces,
// deployers only for the ones that change something.
func TestSchedulesAndKeys(t *testing.T) {
	cfg := testConfig(t, func(s string) string {
		return s + "\n[[schedules]]\nname = \"nightly-rk1\"\ncron = \"0 3 * * *\"\ntimezone = \"Europe/Berlin\"\nhosts = [\"@rk1\"]\n"
	})
	h := newHarness(t, harnessOptions{cfg: cfg})
	sch := &fakeSchedules{paused: map[string]string{}}
	term := &strings.Builder{}
	b, err := bot.New(bot.Options{Config: cfg, Store: h.db, Chat: bot.NewTerminal(term), Deployer: h.deployer, Schedules: sch, Keys: fakeKeys{},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, c := range []struct{ user, text string }{
		{eve, "schedule pause nightly-rk1"},
		{carol, "schedule pause nightly-rk1"},
		{eve, "schedules"},
		{carol, "schedule run nightly-rk1"},
		{carol, "keys check ganon"},
	} {
		b.Command(bot.Invocation{User: c.user, Channel: channel, Text: c.text})
		if err := b.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	out := term.String()
	for _, want := range []string{
		"only deployers may control schedules",
		"schedule nightly-rk1 paused by @" + carol,
		"*nightly-rk1* `0 3 * * *` (Europe/Berlin) switch rk1-node1, rolling — :double_vertical_bar: paused by @" + carol,
		"schedule nightly-rk1 run #1 started by @" + carol,
		":x: keys check: 1 problem(s)",
		"ganon: the .pub file does not match the private key",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("terminal lacks %q:\n%s", want, out)
		}
	}
	if sch.paused["nightly-rk1"] != carol {
		t.Errorf("paused = %v", sch.paused)
	}
}

// TestUserMessage: users get one sentence; no error chain, path or
// secret leaks through.
func TestUserMessage(t *testing.T) {
	_, parseErr := commands.Parse(testConfig(t, nil), "switch gannon")
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"parser", parseErr, `"gannon"`},
		{"busy", fmt.Errorf("run: %w", nixdeploy.ErrHostBusy), "busy"},
		{"unauthorized", fmt.Errorf("x: %w", nixdeploy.ErrUnauthorized), "not allowed"},
		{"cancelled", fmt.Errorf("deploy: %w", context.Canceled), "stopped"},
		{"internal", fmt.Errorf("open /var/lib/nixdeploy/keys/ganon_ssh_host_ed25519_key: %w", os.ErrPermission), "something went wrong"},
		{"wrapped internal", fmt.Errorf("step: %w", errors.New("AGE-SECRET-KEY-1QQQ in env\nsecond line")), "something went wrong"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := bot.UserMessage(tc.err)
			if !strings.Contains(got, tc.want) {
				t.Errorf("UserMessage = %q, want it to contain %q", got, tc.want)
			}
			for _, bad := range []string{"\n", "/var/lib", "AGE-SECRET-KEY", "ssh_host", ": %!"} {
				if strings.Contains(got, bad) {
					t.Errorf("UserMessage leaks %q: %q", bad, got)
				}
			}
		})
	}
}

// TestScheduledDeploy: a schedule's request takes the same path as a chat
// request (status message, streamed log, upload, audit), a locked host is
// an ErrHostBusy the scheduler can wait on, and an install is refused.
func TestScheduledDeploy(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	req := nixdeploy.Request{Action: nixdeploy.ActionSwitch, Hosts: []string{"rk1-node1"}, Requester: "schedule:nightly-rk1", Source: nixdeploy.SourceSchedule}
	dep, err := h.bot.Deploy(t.Context(), req)
	if err != nil || dep.State != nixdeploy.StateSucceeded || dep.Source != nixdeploy.SourceSchedule {
		t.Fatalf("Deploy = %+v, %v", dep, err)
	}
	m, _ := h.slack.Message(dep.Channel, dep.MessageTS)
	if !strings.Contains(m.Rendered(), "Requested by schedule nightly-rk1.") || len(h.slack.Files()) != 1 {
		t.Errorf("status message:\n%s", m.Rendered())
	}
	h.command(bob, "lock rk1-node1 1h firmware")
	if _, err := h.bot.Deploy(t.Context(), req); !errors.Is(err, nixdeploy.ErrHostBusy) {
		t.Errorf("Deploy on a locked host: %v", err)
	}
	req.Action = nixdeploy.ActionInstall
	if _, err := h.bot.Deploy(t.Context(), req); !errors.Is(err, nixdeploy.ErrUnauthorized) {
		t.Errorf("scheduled install: %v", err)
	}
	if err := h.bot.Announce(t.Context(), "nightly-rk1 succeeded"); err != nil {
		t.Fatal(err)
	}
}
