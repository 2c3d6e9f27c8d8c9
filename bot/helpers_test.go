package bot_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/bot"
	"github.com/nixdeploy/nixdeploy/db"
	"github.com/nixdeploy/nixdeploy/internal/slackfake"
	"github.com/nixdeploy/nixdeploy/runs"
)

// Users of the test fleet.
const (
	alice   = "U0ALICE01" // deployer and approver
	bob     = "U0BOB0001" // deployer and approver
	carol   = "U0CAROL01" // deployer, not an approver
	eve     = "U0EVE0001" // neither
	channel = "C0FLEET01"
	secret  = "8f742231b10e8888abcd99yyyzzz85a5"
	token   = "xoxb-test-token"
)

const fleetTOML = `
flake = "/srv/dots/nix"
installer_flake = "/srv/dots/nix/nixos-installer"

[slack]
channel = "C0FLEET01"
deployers = ["U0ALICE01", "U0BOB0001", "U0CAROL01"]
approvers = ["U0ALICE01", "U0BOB0001"]
destructive = true
approval_ttl = "15m"

[[hosts]]
name = "ganon"
address = "192.0.2.10"
system = "x86_64-linux"
disk = "/dev/nvme0n1"

[[hosts]]
name = "rk1-node1"
address = "192.0.2.11"
system = "aarch64-linux"
tags = ["rk1"]
disk = "/dev/mmcblk0"
`

func testConfig(t testing.TB, edit func(string) string) *nixdeploy.Config {
	t.Helper()
	text := fleetTOML
	if edit != nil {
		text = edit(text)
	}
	cfg, err := nixdeploy.ParseConfig(filepath.Join(t.TempDir(), "nixdeploy.toml"), []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// fakeClock is a bot.Clock that moves only when told to.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*fakeTimer
	waits   []time.Duration
	changed chan struct{}
}

type fakeTimer struct {
	at time.Time
	d  time.Duration
	f  func()
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 26, 22, 0, 0, 0, time.UTC), changed: make(chan struct{})}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waits = append(c.waits, d)
	t := &fakeTimer{at: c.now.Add(d), d: d, f: f}
	if d <= 0 {
		go f()
		return func() bool { return false }
	}
	c.timers = append(c.timers, t)
	close(c.changed)
	c.changed = make(chan struct{})
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		i := slices.Index(c.timers, t)
		if i < 0 {
			return false
		}
		c.timers = slices.Delete(c.timers, i, i+1)
		return true
	}
}

// Advance moves the clock and fires every timer now due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*fakeTimer
	kept := c.timers[:0]
	for _, t := range c.timers {
		if t.at.After(c.now) {
			kept = append(kept, t)
		} else {
			due = append(due, t)
		}
	}
	c.timers = kept
	c.mu.Unlock()
	// The bot's timer functions only signal or spawn, so running them
	// here means their work is tracked by the time Advance returns.
	for _, t := range due {
		t.f()
	}
}

// Jump moves the clock without firing any timer: a timer that is late,
// as a real one can be when the process was suspended or busy.
func (c *fakeClock) Jump(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// waitTimer blocks until a timer of exactly d is pending.
func (c *fakeClock) waitTimer(t testing.TB, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		c.mu.Lock()
		found := slices.ContainsFunc(c.timers, func(x *fakeTimer) bool { return x.d == d })
		changed := c.changed
		c.mu.Unlock()
		if found {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("no timer of %s was armed", d)
		}
	}
}

// autoAdvance jumps the clock to each timer as soon as one is armed, until
// ctx ends: every wait passes at once, in order.
func (c *fakeClock) autoAdvance(ctx context.Context) {
	for {
		c.mu.Lock()
		changed := c.changed
		var next time.Time
		for _, t := range c.timers {
			if next.IsZero() || t.at.Before(next) {
				next = t.at
			}
		}
		now := c.now
		c.mu.Unlock()
		if !next.IsZero() {
			c.Advance(next.Sub(now))
			continue
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}

func (c *fakeClock) waited() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.waits)
}

// script is what a fakeDeployer run does; emit stores and streams a line.
type script func(ctx context.Context, dep nixdeploy.Deployment, emit func(step string, s nixdeploy.Stream, text string)) bot.Result

// fakeDeployer stands in for deployer/ in the tests that are not about
// SSH: it stores every line in the DB (in batches, as a deployer must) and
// passes it to the sink.
type fakeDeployer struct {
	store   *db.DB
	clock   *fakeClock
	script  script
	started chan nixdeploy.Deployment
	// perLine advances the clock for every emitted line.
	perLine time.Duration
	// cfg is the config the plan fingerprint is computed against (the
	// bot's, so a reload changes it).
	cfg func() *nixdeploy.Config
}

// Fingerprint stands in for the deployer's plan fingerprint: a digest of
// what the config says the hosts are (name, action, flake and installer
// refs, disk, address) and the lock, so a change of any voids an
// approval as the real plan's would.
func (f *fakeDeployer) Fingerprint(dep nixdeploy.Deployment) (string, error) {
	return fingerprintOf(f.cfg(), dep)
}

func fingerprintOf(cfg *nixdeploy.Config, dep nixdeploy.Deployment) (string, error) {
	h := sha256.New()
	for _, name := range dep.Hosts {
		host, ok := cfg.Host(name)
		if !ok {
			return "", fmt.Errorf("%w: %s", nixdeploy.ErrUnknownHost, name)
		}
		rev := ""
		if dep.Lock != nil {
			rev = dep.Lock.Revision
		}
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%s\x00%s\x00%s\x00\x00", host.Name, dep.Action, cfg.FlakeRef(host), cfg.InstallerRef(host), host.Disk, host.SSHAddr(), rev)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (f *fakeDeployer) Run(ctx context.Context, depp *nixdeploy.Deployment, sinks ...nixdeploy.Sink) (*nixdeploy.Report, error) {
	dep, sink := *depp, sinks[0]
	if f.started != nil {
		f.started <- dep
	}
	var seq int64
	var batch []nixdeploy.LogLine
	flush := func() {
		if err := f.store.AppendLogs(context.WithoutCancel(ctx), dep.ID, batch); err != nil {
			panic(err)
		}
		batch = batch[:0]
	}
	emit := func(step string, s nixdeploy.Stream, text string) {
		if f.perLine > 0 {
			f.clock.Advance(f.perLine)
		}
		seq++
		l := nixdeploy.LogLine{Seq: seq, Time: f.clock.Now(), Host: dep.Hosts[0], Step: step, Stream: s, Text: text}
		batch = append(batch, l)
		if len(batch) == 500 {
			flush()
		}
		sink.Line(l)
	}
	sc := f.script
	if sc == nil {
		sc = func(ctx context.Context, dep nixdeploy.Deployment, emit func(string, nixdeploy.Stream, string)) bot.Result {
			emit("nixos-rebuild", nixdeploy.StreamStdout, "building the system configuration...")
			emit("nixos-rebuild", nixdeploy.StreamStdout, "activating the configuration...")
			return bot.Result{State: nixdeploy.StateSucceeded}
		}
	}
	res := sc(ctx, dep, emit)
	flush()
	return reportOf(res)
}

// reportOf is a script's result as a deployer reports it: a report, and a
// *nixdeploy.StepError for a failure.
func reportOf(res bot.Result) (*nixdeploy.Report, error) {
	rep := &nixdeploy.Report{State: res.State}
	if res.Err == nil {
		return rep, nil
	}
	return rep, &nixdeploy.StepError{Host: res.Host, Step: res.Step, ExitCode: res.ExitCode, Err: res.Err}
}

// switchHandler lets a restarted bot answer on the same URL.
type switchHandler struct{ h atomic.Pointer[http.Handler] }

func (s *switchHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*s.h.Load()).ServeHTTP(w, r)
}

// harness is a bot wired to a real SQLite DB, the fake Slack and a fake
// deployer, served over HTTP like in production.
type harness struct {
	t        testing.TB
	dbPath   string
	db       *db.DB
	slack    *slackfake.Server
	clock    *fakeClock
	deployer *fakeDeployer
	bot      *bot.Bot
	life     *runs.Lifecycle
	handler  switchHandler
	srv      *httptest.Server
	send     *slackfake.Sender
	cfg      *nixdeploy.Config
	events   int
	opts     harnessOptions
}

type harnessOptions struct {
	cfg    *nixdeploy.Config
	script script
	// deployer, when set, makes the deployer instead of the fake one;
	// realClock replaces the fake clock.
	deployer  func(*db.DB) bot.Deployer
	realClock bool
	interval  time.Duration
	// started, when set, receives each deployment as the deployer starts it.
	started chan nixdeploy.Deployment
	perLine time.Duration
	// store, when set, wraps the DB the lifecycle writes through.
	store func(*db.DB) runs.Store
	// bmc and observer are passed to the bot as they are.
	bmc      bot.BMC
	observer bot.Observer
	// members, when set, are the fake Slack's channels and their members.
	members map[string][]string
	// limits is the bot's Slack rate budget; nil: none, so the fake
	// clock alone decides when updates go out.
	limits map[string]bot.Limit
}

func newHarness(t testing.TB, o harnessOptions) *harness {
	t.Helper()
	h := &harness{t: t, dbPath: filepath.Join(t.TempDir(), "nixdeploy.db"), clock: newFakeClock(), cfg: o.cfg}
	if h.cfg == nil {
		h.cfg = testConfig(t, nil)
	}
	h.slack = slackfake.New(slackfake.Options{BotToken: token, Members: o.members})
	t.Cleanup(h.slack.Close)
	h.deployer = &fakeDeployer{clock: h.clock, script: o.script, started: o.started, perLine: o.perLine}
	if o.limits == nil {
		o.limits = map[string]bot.Limit{}
	}
	h.opts = o
	h.srv = httptest.NewServer(&h.handler)
	t.Cleanup(h.srv.Close)
	h.send = &slackfake.Sender{BaseURL: h.srv.URL, Secret: secret}
	h.open(nil)
	t.Cleanup(func() {
		h.bot.Close()
		h.db.Close()
	})
	return h
}

// open (re)opens the DB and starts a new Bot on it.
func (h *harness) open(interrupted []nixdeploy.Deployment) {
	t := h.t
	d, in, err := db.Open(context.Background(), h.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	var clock bot.Clock = h.clock
	var dep bot.Deployer = h.deployer
	if h.opts.realClock {
		clock = bot.RealClock{}
	} else {
		d.Now = h.clock.Now
	}
	if h.opts.deployer != nil {
		dep = h.opts.deployer(d)
	}
	if interrupted == nil {
		interrupted = in
	}
	h.db = d
	h.deployer.store = d
	api := slack.New(token, slack.OptionAPIURL(h.slack.APIURL()))
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	var rs runs.Store = d
	if h.opts.store != nil {
		rs = h.opts.store(d)
	}
	cfgNow := func() *nixdeploy.Config {
		if h.bot != nil {
			return h.bot.Config()
		}
		return h.cfg
	}
	h.deployer.cfg = cfgNow
	life := runs.NewWith(runs.Options{Store: rs, Executor: dep, Config: cfgNow, Clock: clock, Logger: logger})
	b, err := bot.New(bot.Options{
		Config:         h.cfg,
		Store:          d,
		Lifecycle:      life,
		Chat:           bot.NewSlackChat(api, bot.SlackChatOptions{Clock: clock, Logger: logger}),
		Deployer:       dep,
		Locks:          d,
		BotUser:        slackfake.BotUserID,
		Interrupted:    interrupted,
		Clock:          clock,
		Logger:         logger,
		UpdateInterval: h.opts.interval,
		BMC:            h.opts.bmc,
		Observer:       h.opts.observer,
		RateLimits:     h.opts.limits,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.bot = b
	h.life = life
	var hh http.Handler = b.HTTPHandler(secret)
	h.handler.h.Store(&hh)
}

// restart closes the bot and the DB, as a process exit would, and starts
// a new Bot on the reopened DB.
func (h *harness) restart() {
	h.bot.Close()
	if err := h.db.Close(); err != nil {
		h.t.Fatal(err)
	}
	h.open(nil)
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// slash sends a signed slash command and returns the ack's text.
func (h *harness) slash(user, text string) string {
	h.t.Helper()
	resp, err := h.send.Slash(h.t.Context(), slackfake.SlashCommand{UserID: user, ChannelID: channel, Text: text})
	if err != nil {
		h.t.Fatal(err)
	}
	if resp.Status != http.StatusOK {
		h.t.Fatalf("slash %q: status %d: %s", text, resp.Status, resp.Body)
	}
	var ack struct {
		ResponseType string `json:"response_type"`
		Text         string `json:"text"`
	}
	if err := json.Unmarshal(resp.Body, &ack); err != nil {
		h.t.Fatalf("slash ack %s: %v", resp.Body, err)
	}
	if ack.ResponseType != "ephemeral" {
		h.t.Errorf("slash ack response_type = %q, want ephemeral", ack.ResponseType)
	}
	return ack.Text
}

// command sends a signed slash command and waits until its work is done.
func (h *harness) command(user, text string) string {
	h.t.Helper()
	ack := h.slash(user, text)
	h.settle()
	return ack
}

// react sends a signed reaction_added event with a fresh event_id and
// waits until the bot has acted on it.
func (h *harness) react(user, name, ch, ts string) string {
	h.t.Helper()
	h.events++
	id := fmt.Sprintf("Ev%08d", h.events)
	h.reactID(id, user, name, ch, ts)
	h.settle()
	return id
}

func (h *harness) reactID(id, user, name, ch, ts string) {
	h.t.Helper()
	resp, err := h.send.Event(h.t.Context(), id, slackfake.ReactionAdded(user, name, ch, ts))
	if err != nil {
		h.t.Fatal(err)
	}
	if resp.Status != http.StatusOK {
		h.t.Fatalf("event %s: status %d: %s", id, resp.Status, resp.Body)
	}
}

// settle waits until the bot has nothing in flight.
func (h *harness) settle() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.t.Context(), 30*time.Second)
	defer cancel()
	if err := h.bot.Wait(ctx); err != nil {
		h.t.Fatalf("bot did not settle: %v", err)
	}
}

// approvalMessage returns the newest approval message posted.
func (h *harness) approvalMessage() slackfake.Message {
	h.t.Helper()
	msgs := h.slack.Messages()
	for i := len(msgs) - 1; i >= 0; i-- {
		if strings.Contains(msgs[i].Versions[0], "Approval needed") {
			return msgs[i]
		}
	}
	h.t.Fatal("no approval message was posted")
	return slackfake.Message{}
}

// ephemerals returns the rendered ephemeral messages shown to user.
func (h *harness) ephemerals(user string) []string {
	var out []string
	for _, m := range h.slack.Messages() {
		if m.Ephemeral && m.User == user {
			out = append(out, m.Rendered())
		}
	}
	return out
}

// auditKinds lists the audit trail as "actor kind" strings.
func (h *harness) auditKinds(depID int64) []string {
	h.t.Helper()
	trail, err := h.db.AuditTrail(context.Background(), depID)
	if err != nil {
		h.t.Fatal(err)
	}
	out := make([]string, len(trail))
	for i, e := range trail {
		out[i] = e.Actor + " " + e.Kind
	}
	return out
}

func (h *harness) deployment(id int64) nixdeploy.Deployment {
	h.t.Helper()
	d, err := h.db.Deployment(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return d
}

func (h *harness) approval(ch, ts string) nixdeploy.Approval {
	h.t.Helper()
	a, err := h.db.ApprovalByMessage(context.Background(), ch, ts)
	if err != nil {
		h.t.Fatal(err)
	}
	return a
}

func contains(list []string, want string) bool { return slices.Contains(list, want) }

func anyContains(list []string, sub string) bool {
	return slices.ContainsFunc(list, func(s string) bool { return strings.Contains(s, sub) })
}
