// Package bot is nixdeploy's chat adapter. One set of handlers serves
// Slack's HTTP endpoints (signed requests), Slack's Socket Mode and a
// terminal: slash commands are acknowledged at once and worked on in the
// background; destructive requests wait for an approver's reaction on the
// bot's approval message; a running deployment is one status message,
// updated at most every 1.5 s, whose thread gets the complete log.
//
// The bot decides nothing about a deployment's life: it checks who may ask
// (Slack users), calls the lifecycle (runs.Lifecycle: submit, approve,
// reject, cancel, recover, shut down) and, as its runs.Presenter, shows
// people what happened and words every error in one sentence. It reads
// through small interfaces defined here (Store, Locks, Schedules,
// KeyChecker, and Deployer for the lifecycle it builds when none is
// given) and talks to people through Chat, implemented for the Slack Web
// API and for a terminal.
package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/internal/work"
	"github.com/nixdeploy/nixdeploy/runs"
)

// Defaults for Options.
const (
	DefaultUpdateInterval = 1500 * time.Millisecond
	DefaultTailLines      = 15
)

// Options configure a Bot. Config, Store, Chat and Deployer are required.
type Options struct {
	Config *nixdeploy.Config
	Store  Store
	Chat   Chat
	// RateLimits is the Slack rate budget all deployments share; nil:
	// DefaultLimits for a SlackChat, none for another Chat (a terminal).
	RateLimits map[string]Limit
	// Deployer runs deployments; the bot builds its lifecycle on it and
	// Store (which must then also be a runs.Store, as *db.DB is) unless
	// Lifecycle is given, which then has its own executor. It may offer
	// Unlocker ("/nixdeploy unlock-disk").
	Deployer Deployer
	// Lifecycle, optional, is the one owner of deployments (runs); the
	// bot becomes its Presenter.
	Lifecycle *runs.Lifecycle
	// Locks, Schedules and Keys are optional; without them the commands
	// that need them answer that the feature is not available.
	Locks     Locks
	Schedules Schedules
	Keys      KeyChecker
	// BotUser is the bot's own user id; its reactions are not decisions.
	BotUser string
	// Interrupted are the deployments db.Open marked interrupted; Start
	// hands them to the lifecycle's Recover and edits the status messages
	// of those that stay interrupted to say so.
	Interrupted []nixdeploy.Deployment
	// Clock defaults to RealClock; Logger to slog.Default().
	Clock  Clock
	Logger *slog.Logger
	// UpdateInterval is the least time between two updates of a status
	// message (default 1.5 s); TailLines how many lines it shows (15).
	UpdateInterval time.Duration
	TailLines      int
	// Handlers bounds how many commands and reactions are worked on at
	// once (default 4); more wait their turn. A burst of requests then
	// cannot take the CPU that acknowledging the next ones within Slack's
	// 3 s needs. Deployments are not counted.
	Handlers int
	// Observer, optional, hears how each deployment ended (metrics).
	Observer Observer
	// BMC, optional, powers and reads the consoles of hosts on a Turing
	// Pi board (power.go); without it those commands say it is missing.
	BMC BMC
}

// Bot is the chat front end of nixdeploy.
type Bot struct {
	cfg       atomic.Pointer[nixdeploy.Config]
	store     Store
	life      *runs.Lifecycle
	chat      Chat
	deployer  Deployer
	locks     Locks
	schedules Schedules
	keys      KeyChecker
	bmc       BMC
	botUser   string
	observer  Observer
	clock     Clock
	log       *slog.Logger
	interval  time.Duration
	tailLines int

	interrupted []nixdeploy.Deployment

	// handlers holds one token per command or reaction being worked on.
	handlers chan struct{}

	// ctx is the bot's own context: work started by a request outlives
	// the request and ends with Close.
	ctx    context.Context
	cancel context.CancelCauseFunc
	work   work.Tracker

	mu     sync.Mutex
	closed bool
	// rawChat is Chat without the budget: progress updates wait for the
	// budget themselves, behind urgent calls.
	rawChat Chat
	budget  *budget
	// live holds each channel's shared progress board (live.go).
	live map[string]*liveBoard
}

// New checks o and returns a Bot. Call Start before serving.
func New(o Options) (*Bot, error) {
	switch {
	case o.Config == nil:
		return nil, errors.New("bot: no config")
	case o.Store == nil:
		return nil, errors.New("bot: no store")
	case o.Chat == nil:
		return nil, errors.New("bot: no chat")
	case o.Deployer == nil && o.Lifecycle == nil:
		return nil, errors.New("bot: no deployer")
	}
	b := &Bot{
		store: o.Store, life: o.Lifecycle, chat: o.Chat, deployer: o.Deployer,
		locks: o.Locks, schedules: o.Schedules, keys: o.Keys, bmc: o.BMC,
		botUser: o.BotUser, observer: o.Observer, clock: o.Clock, log: o.Logger,
		interval: o.UpdateInterval, tailLines: o.TailLines,
		interrupted: o.Interrupted,
	}
	if b.clock == nil {
		b.clock = RealClock{}
	}
	if b.log == nil {
		b.log = slog.Default()
	}
	if _, slack := o.Chat.(*SlackChat); slack && o.RateLimits == nil {
		o.RateLimits = DefaultLimits
	}
	b.budget = newBudget(b.clock, o.RateLimits)
	b.rawChat, b.chat = o.Chat, budgetChat{Chat: o.Chat, budget: b.budget}
	if b.interval <= 0 {
		b.interval = DefaultUpdateInterval
	}
	if b.tailLines <= 0 {
		b.tailLines = DefaultTailLines
	}
	if o.Handlers <= 0 {
		o.Handlers = 4
	}
	b.handlers = make(chan struct{}, o.Handlers)
	b.cfg.Store(o.Config)
	b.ctx, b.cancel = context.WithCancelCause(context.Background())
	if b.life == nil {
		rs, ok := o.Store.(runs.Store)
		if !ok {
			return nil, errors.New("bot: the store cannot record deployments; pass a Lifecycle")
		}
		b.life = runs.NewWith(runs.Options{Store: rs, Executor: o.Deployer, Config: b.Config, Clock: b.clock, Logger: b.log})
	}
	b.life.SetPresenter(b)
	return b, nil
}

// SetSchedules wires the scheduler in after it was built on this bot (it
// announces through it). Call it before serving.
func (b *Bot) SetSchedules(s Schedules) { b.schedules = s }

// Config returns the config decisions are made against.
func (b *Bot) Config() *nixdeploy.Config { return b.cfg.Load() }

// SetConfig replaces the config, for a reload. Pending approvals are
// checked against the new one when someone approves.
func (b *Bot) SetConfig(cfg *nixdeploy.Config) { b.cfg.Store(cfg) }

// Start recovers what a restart left (runs.Recover: the expiry of
// pending approvals, deployments an executor can reattach to) and tells
// the channel about deployments a restart interrupted.
func (b *Bot) Start(ctx context.Context) error {
	left, err := b.life.Recover(ctx, b.interrupted)
	if err != nil {
		return fmt.Errorf("start bot: %w", err)
	}
	for _, dep := range left {
		b.log.Warn("deployment interrupted by restart", "deployment", dep.ID, "hosts", dep.Hosts)
		b.audit(ctx, "nixdeploy", "interrupted", dep.ID, "nixdeploy restarted while it was in flight")
		if dep.StartedAt.IsZero() && dep.Action.Destructive() {
			// Approved but never started: it has no status message, and
			// nobody would learn it did not run. Say so in the channel.
			text := fmt.Sprintf(":warning: %s (requested by %s): %s.", title(dep), mention(dep.Requester), dep.Error)
			if _, err := b.chat.Post(ctx, b.Config().Slack.Channel, Message{Kind: KindNotice, Text: text}); err != nil {
				b.log.Error("announce an approved deployment that did not start", "deployment", dep.ID, "err", err)
			}
			continue
		}
		if dep.Channel == "" || dep.MessageTS == "" {
			continue
		}
		if err := b.chat.Update(ctx, dep.Channel, dep.MessageTS, interruptedMessage(dep)); err != nil {
			b.log.Error("mark status message interrupted", "deployment", dep.ID, "err", err)
		}
	}
	b.log.Info("bot started", "interrupted", len(left))
	return nil
}

// Close stops the bot at once: deployments in flight are interrupted
// (see Shutdown for the graceful way), and Close returns once all
// background work has ended.
func (b *Bot) Close() {
	b.stopIntake()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	b.life.Shutdown(done)
	b.cancel(nixdeploy.ErrShutdown)
	b.work.Wait(context.Background())
}

// stopIntake makes the bot take no new work.
func (b *Bot) stopIntake() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
}

// Wait blocks until no request, reaction or deployment is being worked
// on, or ctx ends. The terminal and tests use it to let things settle.
func (b *Bot) Wait(ctx context.Context) error {
	for {
		if err := b.work.Wait(ctx); err != nil {
			return err
		}
		if err := b.life.Wait(ctx); err != nil {
			return err
		}
		// A run's end may have started new work (a schedule's next host)
		// and a handler may have started a run: settled only when both
		// are idle at once.
		if b.work.Idle() && b.life.Idle() {
			return nil
		}
	}
}

// spawn runs fn in the background under the bot's context. It reports
// false, running nothing, once the bot is closed.
func (b *Bot) spawn(fn func(ctx context.Context)) bool {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return false
	}
	b.work.Add()
	b.mu.Unlock()
	go func() {
		defer b.work.Done()
		fn(b.ctx)
	}()
	return true
}

// handle runs a command's or reaction's work in the background, at most
// Options.Handlers at a time.
func (b *Bot) handle(fn func(ctx context.Context)) bool {
	return b.spawn(func(ctx context.Context) {
		select {
		case b.handlers <- struct{}{}:
		case <-ctx.Done():
			return
		}
		defer func() { <-b.handlers }()
		fn(ctx)
	})
}

// audit records a decision; losing an audit row must not undo the
// decision, so a failure is logged loudly instead.
func (b *Bot) audit(ctx context.Context, actor, kind string, depID int64, detail string) {
	e := nixdeploy.AuditEvent{Time: b.clock.Now().UTC(), Actor: actor, Kind: kind, DeploymentID: depID, Detail: detail}
	if err := b.store.Audit(context.WithoutCancel(ctx), e); err != nil {
		b.log.Error("audit", "kind", kind, "actor", actor, "deployment", depID, "err", err)
	}
}

func isDeployer(cfg *nixdeploy.Config, user string) bool {
	return slices.Contains(cfg.Slack.Deployers, user)
}

func isApprover(cfg *nixdeploy.Config, user string) bool {
	return slices.Contains(cfg.Slack.Approvers, user)
}

// channelFor is where deployment and approval messages go: the configured
// fleet channel, or where the command was typed.
func (b *Bot) channelFor(inv Invocation) string {
	if c := b.Config().Slack.Channel; c != "" {
		return c
	}
	return inv.Channel
}
