package bot_test

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/bot"
	"github.com/nixdeploy/nixdeploy/internal/slackfake"
)

// TestAckBeforeDeployment: the slash command's HTTP answer arrives while
// the deployment it started is still held back, so a slow deployment can
// never make Slack time out. Channels, not timing, prove the order.
func TestAckBeforeDeployment(t *testing.T) {
	release := make(chan struct{})
	started := make(chan nixdeploy.Deployment, 1)
	h := newHarness(t, harnessOptions{started: started, script: func(ctx context.Context, dep nixdeploy.Deployment, emit func(string, nixdeploy.Stream, string)) bot.Result {
		<-release
		emit("nixos-rebuild", nixdeploy.StreamStdout, "done")
		return bot.Result{State: nixdeploy.StateSucceeded}
	}})
	acked := make(chan string, 1)
	go func() { acked <- h.slash(alice, "switch ganon") }()
	var ack string
	select {
	case ack = <-acked:
	case <-time.After(10 * time.Second): // only bounds a failure
		close(release)
		t.Fatal("the slash command was not acknowledged while the deployment was held")
	}
	if ack != "`/nixdeploy switch ganon`" {
		t.Errorf("ack = %q, want the canonical command", ack)
	}
	dep := <-started
	if dep.ID != 1 || dep.Hosts[0] != "ganon" {
		t.Errorf("started %+v", dep)
	}
	close(release)
	h.settle()
	if d := h.deployment(1); d.State != nixdeploy.StateSucceeded || d.MessageTS == "" {
		t.Errorf("deployment = %+v", d)
	}
}

// TestRateLimitWaitedOut: two 429s on chat.update are waited out for their
// Retry-After (on the injected clock) and the final message still arrives.
func TestRateLimitWaitedOut(t *testing.T) {
	h := newHarness(t, harnessOptions{script: func(ctx context.Context, dep nixdeploy.Deployment, emit func(string, nixdeploy.Stream, string)) bot.Result {
		emit("nixos-rebuild", nixdeploy.StreamStdout, "building")
		emit("nixos-rebuild", nixdeploy.StreamStderr, "error: builder for '/nix/store/x.drv' failed")
		return bot.Result{State: nixdeploy.StateFailed, ExitCode: 100, Host: "ganon", Step: "nixos-rebuild", Err: fmt.Errorf("nixos-rebuild exited 100")}
	}})
	h.slack.RateLimit("chat.update", 2, 3*time.Second)
	h.slash(alice, "switch ganon")
	for range 2 {
		h.clock.waitTimer(t, 3*time.Second)
		h.clock.Advance(3 * time.Second)
	}
	h.settle()

	calls := h.slack.Calls("chat.update")
	if len(calls) < 3 || calls[0].Status != 429 || calls[1].Status != 429 || calls[len(calls)-1].Status != 200 {
		t.Fatalf("chat.update statuses: %v", statuses(calls))
	}
	waits := 0
	for _, w := range h.clock.waited() {
		if w == 3*time.Second {
			waits++
		}
	}
	if waits != 2 {
		t.Errorf("waited Retry-After %d times, want 2: %v", waits, h.clock.waited())
	}
	d := h.deployment(1)
	m, ok := h.slack.Message(d.Channel, d.MessageTS)
	if !ok {
		t.Fatal("status message missing")
	}
	final := m.Rendered()
	for _, want := range []string{"failed after", "*Failing step:* `nixos-rebuild` on ganon", "*exit code* 100", "builder for", "is in the thread"} {
		if !strings.Contains(final, want) {
			t.Errorf("final message lacks %q:\n%s", want, final)
		}
	}
	if files := h.slack.Files(); len(files) != 1 || files[0].ThreadTS != d.MessageTS {
		t.Errorf("log file not in the thread: %+v", files)
	}
}

// TestFinalMessageNeverDropped: when chat.update keeps failing, the final
// message is posted anew after bounded retries, with the log in its thread.
func TestFinalMessageNeverDropped(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.slack.RateLimit("chat.update", 1000, time.Second)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go h.clock.autoAdvance(ctx)
	h.command(alice, "switch ganon")
	d := h.deployment(1)
	m, ok := h.slack.Message(d.Channel, d.MessageTS)
	if !ok || !strings.Contains(m.Rendered(), "#1 switch ganon* — succeeded") {
		t.Fatalf("final message missing: %+v", m)
	}
	if n := len(h.slack.Calls("chat.postMessage")); n != 2 {
		t.Errorf("%d posts, want the first status message and the final one", n)
	}
	if f := h.slack.Files(); len(f) != 1 || f[0].ThreadTS != d.MessageTS {
		t.Errorf("log not in the final message's thread: %+v", f)
	}
}

func statuses(calls []slackfake.Call) []int {
	out := make([]int, len(calls))
	for i, c := range calls {
		out[i] = c.Status
	}
	return out
}

// TestTenThousandLines: a long deployment costs at most ⌈D/1.5 s⌉ + 5
// Web API calls for its message, shows only the newest lines, and the
// uploaded log is complete: the same lines as the DB, in order.
func TestTenThousandLines(t *testing.T) {
	const n = 10000
	h := newHarness(t, harnessOptions{perLine: time.Millisecond, script: func(ctx context.Context, dep nixdeploy.Deployment, emit func(string, nixdeploy.Stream, string)) bot.Result {
		markers := map[int]string{1: "### Gathering machine facts ###", 2000: "### Switching system into kexec ###",
			4000: "### Formatting hard drive with disko ###", 6000: "### Installing NixOS ###", 9998: "### Rebooting ###"}
		for i := 1; i <= n; i++ {
			text := fmt.Sprintf("copying path '/nix/store/%032d-pkg-%d' from 'https://cache.nixos.org'...", i, i)
			stream := nixdeploy.StreamStdout
			if m, ok := markers[i]; ok {
				// As the deployer announces them: typed phase events.
				stream, text = nixdeploy.StreamEvent, nixdeploy.PhasePrefix+strings.Trim(m, "# ")
			}
			emit("nixos-anywhere", stream, text)
		}
		return bot.Result{State: nixdeploy.StateSucceeded}
	}})
	start := h.clock.Now()
	h.slash(alice, "switch ganon")
	h.settle()
	dur := h.clock.Now().Sub(start)

	d := h.deployment(1)
	if d.State != nixdeploy.StateSucceeded {
		t.Fatalf("deployment %s", d.State)
	}
	var calls int
	for _, c := range h.slack.Calls("chat.postMessage", "chat.update") {
		if c.Params.Get("ts") == d.MessageTS || (c.Method == "chat.postMessage" && strings.Contains(c.Params.Get("text"), "#1 switch")) {
			calls++
		}
	}
	limit := int(math.Ceil(dur.Seconds()/1.5)) + 5
	t.Logf("duration %s: %d calls for the status message (limit %d)", dur, calls, limit)
	if calls > limit {
		t.Errorf("%d Web API calls for a %s deployment, limit %d", calls, dur, limit)
	}
	m, _ := h.slack.Message(d.Channel, d.MessageTS)
	final := m.Rendered()
	if !strings.Contains(final, "pkg-10000'") || strings.Contains(final, "pkg-9900'") {
		t.Errorf("final message does not show just the newest lines:\n%s", final)
	}
	if len(m.Text) > bot.MaxText || !strings.Contains(final, "10,000 lines") {
		t.Errorf("final message text %d bytes / lacks line count", len(m.Text))
	}
	for _, v := range m.Versions {
		if len(v) > 4*bot.MaxSection {
			t.Errorf("a version of the message is %d bytes", len(v))
		}
	}

	files := h.slack.Files()
	if len(files) != 1 {
		t.Fatalf("%d files uploaded, want 1", len(files))
	}
	var want strings.Builder
	lines := 0
	if err := h.db.EachLog(t.Context(), d.ID, func(l nixdeploy.LogLine) error {
		want.WriteString(bot.LogFileLine(l))
		lines++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got := string(files[0].Content)
	if lines != n || strings.Count(got, "\n") != n {
		t.Errorf("file has %d lines, DB %d, want %d", strings.Count(got, "\n"), lines, n)
	}
	if got != want.String() || files[0].Length != len(got) {
		t.Errorf("uploaded log differs from the DB (%d bytes vs %d, declared %d)", len(got), want.Len(), files[0].Length)
	}
	if files[0].ThreadTS != d.MessageTS || files[0].Channel != d.Channel {
		t.Errorf("file shared to %s/%s, want the status message's thread", files[0].Channel, files[0].ThreadTS)
	}
}

// TestStreamingShowsProgress: each update shows the current nixos-anywhere
// phase and step, and updates are spaced by the coalescing interval.
func TestStreamingShowsProgress(t *testing.T) {
	var h *harness
	waitUpdates := func(n int) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for {
			ch := h.slack.Changed()
			if len(h.slack.Calls("chat.update")) >= n {
				return
			}
			select {
			case <-ch:
			case <-ctx.Done():
				panic("no update arrived")
			}
		}
	}
	h = newHarness(t, harnessOptions{script: func(ctx context.Context, dep nixdeploy.Deployment, emit func(string, nixdeploy.Stream, string)) bot.Result {
		for i, m := range []string{"### Switching system into kexec ###", "### Formatting hard drive with disko ###", "### Installing NixOS ###"} {
			h.clock.Advance(2 * time.Second)
			emit("nixos-anywhere", nixdeploy.StreamEvent, nixdeploy.PhasePrefix+strings.Trim(m, "# "))
			waitUpdates(i + 1)
		}
		return bot.Result{State: nixdeploy.StateSucceeded}
	}})
	h.command(alice, "switch ganon")
	d := h.deployment(1)
	m, _ := h.slack.Message(d.Channel, d.MessageTS)
	if len(m.Versions) < 5 {
		t.Fatalf("%d versions, want post + 3 updates + final", len(m.Versions))
	}
	for i, want := range []string{"▶ kexec → · disko", "✓ kexec → ▶ disko", "✓ kexec → ✓ disko → ▶ install"} {
		if v := m.Versions[i+1]; !strings.Contains(v, want) || !strings.Contains(v, "*Step:* `nixos-anywhere` on ganon") {
			t.Errorf("update %d lacks %q:\n%s", i+1, want, v)
		}
	}
	if !strings.Contains(m.Versions[len(m.Versions)-1], "succeeded in 6s") {
		t.Errorf("final: %s", m.Versions[len(m.Versions)-1])
	}
}

// TestInterruptedOnRestart: a deployment that was running when the
// process died is reported by db.Open, and its message says so.
func TestInterruptedOnRestart(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	api := slack.New(token, slack.OptionAPIURL(h.slack.APIURL()))
	_, ts, err := api.PostMessage(channel, slack.MsgOptionText("#1 switch ganon: running", false))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	dep := nixdeploy.Deployment{Hosts: []string{"ganon"}, Action: nixdeploy.ActionSwitch, Requester: alice, Source: nixdeploy.SourceSlack}
	if err := h.db.CreateDeployment(ctx, &dep); err != nil {
		t.Fatal(err)
	}
	if err := h.db.SetMessage(ctx, dep.ID, channel, ts); err != nil {
		t.Fatal(err)
	}
	if err := h.db.SetState(ctx, dep.ID, nixdeploy.StateRunning); err != nil {
		t.Fatal(err)
	}
	h.restart()
	m, _ := h.slack.Message(channel, ts)
	if !strings.Contains(m.Rendered(), "interrupted: nixdeploy restarted") {
		t.Errorf("message not marked interrupted:\n%s", m.Rendered())
	}
	if d := h.deployment(dep.ID); d.State != nixdeploy.StateInterrupted {
		t.Errorf("state %s", d.State)
	}
}

// TestCancelRunning: only the requester or an approver may cancel; the
// cancelled deployment's message says who.
func TestCancelRunning(t *testing.T) {
	started := make(chan nixdeploy.Deployment, 1)
	h := newHarness(t, harnessOptions{started: started, script: func(ctx context.Context, dep nixdeploy.Deployment, emit func(string, nixdeploy.Stream, string)) bot.Result {
		emit("nixos-rebuild", nixdeploy.StreamStdout, "building")
		<-ctx.Done()
		return bot.Result{State: nixdeploy.StateCancelled, ExitCode: 130, Host: "rk1-node1", Step: "nixos-rebuild", Err: ctx.Err()}
	}})
	h.slash(carol, "switch rk1-node1")
	<-started
	h.slash(eve, "cancel 1")
	h.slash(bob, "cancel #1")
	h.settle()
	if !anyContains(h.ephemerals(eve), "only the requester (<@"+carol+">) or an approver can cancel #1") {
		t.Errorf("eve was told %v", h.ephemerals(eve))
	}
	d := h.deployment(1)
	if d.State != nixdeploy.StateCancelled {
		t.Fatalf("state %s", d.State)
	}
	m, _ := h.slack.Message(d.Channel, d.MessageTS)
	if !strings.Contains(m.Rendered(), "cancelled by <@"+bob+">") {
		t.Errorf("final message:\n%s", m.Rendered())
	}
	kinds := h.auditKinds(1)
	if !contains(kinds, eve+" cancel-refused") || !contains(kinds, bob+" cancelled") {
		t.Errorf("audit %v", kinds)
	}
}
