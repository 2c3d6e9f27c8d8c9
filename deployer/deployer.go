// Package deployer plans and runs deployments of the fleet over SSH: a
// nixos-anywhere install or a nixos-rebuild action per host, on the runner
// (over SSH, optionally through a jump host, or local) against the targets.
//
// It owns host-key pinning (a target's key is its pre-generated
// keys/<host>_ssh_host_ed25519_key.pub, the runner's comes from the config),
// cancellation that kills the remote process group, step
// timeouts, connection keepalives, line streaming with redaction to sinks and
// the store, and verification of /run/current-system and the systemd state
// after every action.
package deployer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixdeploy/nixdeploy"
)

// Store is the part of the database the deployer writes: a deployment's
// log, steps and revision, never its state (runs/ and the bot own that).
// *db.DB satisfies it.
type Store interface {
	AppendLogs(ctx context.Context, id int64, lines []nixdeploy.LogLine) error
	RecordStep(ctx context.Context, id int64, s nixdeploy.StepResult) error
	// SetRevision records the flake revision a deployment deployed.
	SetRevision(ctx context.Context, id int64, revision string) error
}

// HostKeys is the pre-generated key store: a host's pinned public key and
// its private key (OpenSSH PEM), decrypted in memory when needed.
type HostKeys interface {
	HostPublicKey(host string) (ssh.PublicKey, error)
	HostPrivateKey(host string) ([]byte, error)
	// DiskKey is the LUKS passphrase of a host whose config has disk_key.
	DiskKey(host string) ([]byte, error)
	// InitrdHostPrivateKey and InitrdHostPublicKey are the initrd SSH
	// server's key of a host with initrd_ssh: uploaded with the install,
	// pinned when unlocking.
	InitrdHostPrivateKey(host string) ([]byte, error)
	InitrdHostPublicKey(host string) (ssh.PublicKey, error)
}

// Preflight checks, before an install, that everything the installed host
// will need is in place (keys.Check: its key, the secrets re-encrypted for
// it). A non-nil error stops the install before the disk is touched.
type Preflight func(ctx context.Context, host string) error

// Timeouts bound the steps of a plan.
type Timeouts struct {
	// Command bounds short commands: mktemp, uploads, probes, cleanup.
	Command time.Duration
	// Install bounds nixos-anywhere, which itself never times out.
	Install time.Duration
	// Rebuild bounds nixos-rebuild.
	Rebuild time.Duration
	// WaitSSH bounds the wait for an installed host to come back.
	WaitSSH time.Duration
	// Verify bounds the checks after an action.
	Verify time.Duration
}

// Options configure a Deployer. Config, Store, HostKeys and ClientKey are
// required; the rest have defaults.
type Options struct {
	Config   *nixdeploy.Config
	Store    Store
	HostKeys HostKeys
	// ClientKey is the bot's SSH identity, for the runner, the jump host
	// and the targets.
	ClientKey ssh.Signer
	// NoClientKey, when ClientKey is nil, is the error every deployment
	// and unlock fails with (it says how to provide a key): nixdeploy
	// still starts, plans, and binds approvals to plans, without reaching
	// the fleet. Resolve then pins nothing.
	NoClientKey error
	// Preflight runs first in every install, after the deployer's own
	// check that the host's private and public keys match.
	Preflight Preflight
	// BMC, optional, reaches the Turing Pi boards of hosts that have one:
	// their serial console for the log, and a power reset when a
	// schedule's recover allows it (recover.go).
	BMC BMC

	Logger *slog.Logger
	Now    func() time.Time

	// ConnectTimeout bounds TCP connect plus SSH handshake (default 10s).
	ConnectTimeout time.Duration
	// KeepaliveInterval and KeepaliveMax: a connection whose peer leaves
	// KeepaliveMax keepalives in a row unanswered is closed (default 5s
	// and 3, so a dead peer is noticed within 20s).
	KeepaliveInterval time.Duration
	KeepaliveMax      int
	Timeouts          Timeouts
	// RebootGrace is how long after nixos-anywhere a target may still
	// present another host key: nixos-anywhere reboots the installer a few
	// seconds after it exits. After that a wrong key is a hard failure
	// (default 30s; negative: none).
	RebootGrace time.Duration
	// WaitBackoff is the first pause between attempts to reach a rebooting
	// host; it doubles up to 15 times its value (default 1s).
	WaitBackoff time.Duration
	// KillGrace is the time between SIGTERM and SIGKILL for a cancelled
	// command's process group (default 5s).
	KillGrace time.Duration
	// CurrentSystemPath is read on targets (default /run/current-system).
	CurrentSystemPath string
	// BootedSystemPath is read on targets for the drift board (default
	// /run/booted-system).
	BootedSystemPath string
	// ReadParallel bounds how many hosts the drift board reads at once
	// (default: the config's board.parallel); ReadTimeout bounds one
	// host's reading, connection included (default: board.read_timeout);
	// EvalTimeout bounds the runner's evaluation of the expected systems
	// (default 10m).
	ReadParallel int
	ReadTimeout  time.Duration
	EvalTimeout  time.Duration
	// GuardRoot is the directory on targets where the rollback guard
	// keeps its link to the system that ran before the activation
	// (default /nix/var/nix/gcroots, so the link is a GC root).
	GuardRoot string
	// GuardGrace is how long after the guard's window the bot keeps
	// trying to reach a host it lost, to confirm the rollback (default 5m).
	GuardGrace time.Duration
	// TargetUser is the login on targets (default root).
	TargetUser string
	// RedactValues are more secret strings to remove from output, on top
	// of the values of the environment variables in
	// Config.Secrets.RedactEnv.
	RedactValues []string
	// MaxLineBytes splits longer output lines (default 64 KiB).
	MaxLineBytes int
	// FlushLines and FlushInterval batch log lines for the store (default
	// 1000 lines or 250ms, whichever comes first).
	FlushLines    int
	FlushInterval time.Duration
	// Outage bounds how long a supervised step's runner may stay
	// unreachable (the whole outage, from the first lost connection);
	// after it the deployment fails and says the step may still be
	// running (config [timeouts] outage; default 10m).
	Outage time.Duration
	// ReconnectBackoff is the first pause between reconnects to the
	// runner; it doubles up to 16 times its value (default 1s).
	ReconnectBackoff time.Duration
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.ConnectTimeout, 10*time.Second)
	def(&o.KeepaliveInterval, 5*time.Second)
	if o.KeepaliveMax <= 0 {
		o.KeepaliveMax = 3
	}
	def(&o.Timeouts.Command, 2*time.Minute)
	def(&o.Timeouts.Install, 2*time.Hour)
	def(&o.Timeouts.Rebuild, time.Hour)
	def(&o.Timeouts.WaitSSH, 15*time.Minute)
	def(&o.Timeouts.Verify, 5*time.Minute)
	if o.RebootGrace == 0 {
		o.RebootGrace = 30 * time.Second
	}
	def(&o.WaitBackoff, time.Second)
	def(&o.KillGrace, 5*time.Second)
	if o.CurrentSystemPath == "" {
		o.CurrentSystemPath = "/run/current-system"
	}
	if o.BootedSystemPath == "" {
		o.BootedSystemPath = "/run/booted-system"
	}
	if o.ReadParallel <= 0 && o.Config != nil {
		o.ReadParallel = o.Config.Board.Parallel
	}
	if o.ReadParallel <= 0 {
		o.ReadParallel = nixdeploy.DefaultBoardParallel
	}
	if o.ReadTimeout <= 0 && o.Config != nil {
		o.ReadTimeout = o.Config.Board.ReadTimeout.Duration
	}
	def(&o.ReadTimeout, nixdeploy.DefaultBoardReadTimeout)
	def(&o.EvalTimeout, 10*time.Minute)
	if o.GuardRoot == "" {
		o.GuardRoot = "/nix/var/nix/gcroots"
	}
	def(&o.GuardGrace, 5*time.Minute)
	if o.TargetUser == "" {
		o.TargetUser = "root"
	}
	if o.MaxLineBytes <= 0 {
		o.MaxLineBytes = 64 << 10
	}
	if o.FlushLines <= 0 {
		o.FlushLines = 1000
	}
	def(&o.FlushInterval, 250*time.Millisecond)
	def(&o.Outage, 10*time.Minute)
	def(&o.ReconnectBackoff, time.Second)
}

// Deployer runs deployments. It is safe for concurrent use. Which hosts
// are busy is not its business: runs.Lifecycle claims a deployment's
// hosts (in memory and in the database) before it calls Run.
type Deployer struct {
	opts   Options
	cfg    *nixdeploy.Config
	log    *slog.Logger
	runner *endpoint // nil when the runner is local
	jump   *endpoint

	runnerSys string // the runner's Nix system, once probed; under mu

	evals evalCache // the drift board's expected systems, per revision
	reads readCalls // the drift board's readings in flight

	mu      sync.Mutex
	cancels map[int64]context.CancelCauseFunc
}

// New checks opts and returns a Deployer.
func New(opts Options) (*Deployer, error) {
	opts.defaults()
	switch {
	case opts.Config == nil:
		return nil, errors.New("deployer: no fleet config")
	case opts.Store == nil:
		return nil, errors.New("deployer: no store")
	case opts.HostKeys == nil:
		return nil, errors.New("deployer: no host key store")
	case opts.ClientKey == nil && opts.NoClientKey == nil:
		return nil, errors.New("deployer: no SSH key for the bot")
	}
	d := &Deployer{
		opts:    opts,
		cfg:     opts.Config,
		log:     opts.Logger,
		cancels: map[int64]context.CancelCauseFunc{},
	}
	r := opts.Config.Runner
	if !r.IsLocal() {
		user, addr, err := nixdeploy.ParseSSHAddress(r.Address)
		if err != nil {
			return nil, fmt.Errorf("runner: %w", err)
		}
		key, err := configuredKey("runner", r.HostKey, r.KnownHosts, addr)
		if err != nil {
			return nil, err
		}
		d.runner = &endpoint{name: "runner", user: user, addr: addr, key: key}
	}
	if j := r.Jump; j != nil {
		user, addr, err := nixdeploy.ParseSSHAddress(j.Address)
		if err != nil {
			return nil, fmt.Errorf("jump host: %w", err)
		}
		key, err := configuredKey("jump host", j.HostKey, j.KnownHosts, addr)
		if err != nil {
			return nil, err
		}
		d.jump = &endpoint{name: "jump host", user: user, addr: addr, key: key}
	}
	return d, nil
}

// ErrCancelled is the cause of a deployment stopped through Cancel.
var ErrCancelled = nixdeploy.ErrCancelled

// Cancel stops a running deployment. It reports whether id was running.
func (d *Deployer) Cancel(id int64) bool {
	d.mu.Lock()
	cancel, ok := d.cancels[id]
	d.mu.Unlock()
	if ok {
		cancel(ErrCancelled)
	}
	return ok
}

// The report of a run is root vocabulary (nixdeploy.Report); these names
// keep the deployer's callers reading as before.
type (
	Outcome    = nixdeploy.Outcome
	HostReport = nixdeploy.HostReport
	Report     = nixdeploy.Report
	StepError  = nixdeploy.StepError
)

// Host outcomes.
const (
	OutcomeSucceeded = nixdeploy.OutcomeSucceeded
	OutcomeFailed    = nixdeploy.OutcomeFailed
	OutcomeCancelled = nixdeploy.OutcomeCancelled
	OutcomeUntouched = nixdeploy.OutcomeUntouched
)

// ErrStepTimeout is a step stopped by its timeout.
var ErrStepTimeout = nixdeploy.ErrStepTimeout

// Check reports whether dep can be planned: its hosts are in the fleet
// config and its action has a plan. The lifecycle asks before it stores a
// request, so a request that cannot run leaves no row.
func (d *Deployer) Check(dep nixdeploy.Deployment) error {
	_, err := d.plans(&dep)
	return err
}

// Run runs dep: its Action on its Hosts, in order, one at a time, halting
// at the first failure. Host names must come from the fleet config. dep
// must be stored and started already (runs.Lifecycle does both); Run
// writes its steps, revision and log, never its state, and leaves the
// outcome on dep (State, ExitCode and the redacted Error) and in the
// report for the caller to record. Every line goes, redacted, to sinks and
// the store.
//
// The report is returned whenever the deployment ran; the error is nil only
// when every host succeeded. A failure is a *StepError; a cancel wraps
// context.Canceled (or the cause given to Cancel) and ends the deployment
// cancelled, or interrupted when the cause is nixdeploy.ErrShutdown; a busy
// unknown host wraps nixdeploy.ErrUnknownHost. Run does not check that the
// hosts are free: the lifecycle claimed them.
func (d *Deployer) Run(ctx context.Context, dep *nixdeploy.Deployment, sinks ...Sink) (*Report, error) {
	if dep.ID == 0 {
		return nil, errors.New("run a deployment that is not stored: create and start it through runs.Lifecycle")
	}
	plans, err := d.plans(dep)
	if err != nil {
		return nil, err
	}
	if d.opts.ClientKey == nil {
		dep.State, dep.ExitCode, dep.Error = nixdeploy.StateFailed, 1, d.opts.NoClientKey.Error()
		return &Report{DeploymentID: dep.ID, State: nixdeploy.StateFailed},
			&StepError{Host: dep.Hosts[0], Step: "connect", ExitCode: 1, Err: d.opts.NoClientKey}
	}
	return d.execute(ctx, dep, plans, sinks, nil)
}

// execute runs plans for dep; with res, from the supervised step a
// reattach found (reattach.go).
func (d *Deployer) execute(ctx context.Context, dep *nixdeploy.Deployment, plans []*Plan, sinks []Sink, res *resumePoint) (*Report, error) {
	dep.State = nixdeploy.StateRunning

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	d.mu.Lock()
	d.cancels[dep.ID] = cancel
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.cancels, dep.ID)
		d.mu.Unlock()
	}()

	log := d.log.With("deployment", dep.ID, "action", string(dep.Action))
	log.Info("deployment started", "hosts", strings.Join(dep.Hosts, ","))
	var r *run
	if res == nil {
		r = d.newRun(ctx, dep, sinks, log)
	} else {
		r = d.newRunAt(ctx, dep, res.seq, sinks, log)
	}
	if dep.Fingerprint != "" {
		r.planFingerprint = fingerprint(dep, plans)
	}
	rep := &Report{DeploymentID: dep.ID}
	var runErr error
	for i, p := range plans {
		if res != nil && i < res.host {
			// Done before the restart: hosts run in order and halt at
			// the first failure.
			rep.Hosts = append(rep.Hosts, HostReport{Host: p.Host.Name, Outcome: OutcomeSucceeded})
			continue
		}
		if runErr == nil && len(rep.Hosts) > 0 {
			// A host not started yet stays untouched once the log is
			// known to be incomplete.
			if le := r.em.syncStore(); le != nil {
				runErr = &StepError{Host: p.Host.Name, Step: "log", ExitCode: -1, Err: le}
			}
		}
		if runErr != nil || ctx.Err() != nil {
			rep.Hosts = append(rep.Hosts, HostReport{Host: p.Host.Name, Outcome: OutcomeUntouched, ExitCode: -1})
			continue
		}
		if dep.Lock != nil && (dep.Lock.URL != "" || dep.Lock.Image != "") {
			p.Locked = dep.Lock
		}
		var hr HostReport
		if res != nil && i == res.host {
			hr = r.hostAt(ctx, p, res.rs)
		} else {
			hr = r.host(ctx, p)
		}
		rep.Hosts = append(rep.Hosts, hr)
		if hr.Revision != "" && hr.Revision != dep.Revision {
			dep.Revision = hr.Revision
			d.recordRevision(ctx, dep.ID, hr.Revision)
		}
		if hr.Outcome != OutcomeSucceeded {
			runErr = &StepError{Host: hr.Host, Step: hr.Step, ExitCode: hr.ExitCode, Err: hr.Err}
		}
	}
	if runErr == nil && ctx.Err() != nil {
		runErr = &StepError{Host: dep.Hosts[0], Step: "start", ExitCode: -1, Err: context.Cause(ctx)}
	}
	rep.State, dep.ExitCode = nixdeploy.StateSucceeded, 0
	if runErr != nil {
		rep.State = nixdeploy.StateFailed
		switch {
		case errors.Is(context.Cause(ctx), nixdeploy.ErrShutdown):
			// Stopped by a shutdown, not by a person: the bot says
			// interrupted, and so must the record.
			rep.State = nixdeploy.StateInterrupted
		case ctx.Err() != nil:
			rep.State = nixdeploy.StateCancelled
		case res != nil && errors.Is(runErr, ErrRemoteUnknown):
			// A reattach that could learn neither the end nor the state
			// of the step: what is unknown is in the error.
			rep.State = nixdeploy.StateInterrupted
		}
		var se *StepError
		errors.As(runErr, &se)
		dep.ExitCode = se.ExitCode
		if dep.ExitCode == 0 {
			dep.ExitCode = 1
		}
	}
	r.em.event("", "", "deployment %d finished: %s", dep.ID, rep.Summary())
	r.close()
	rep.LogErr = r.em.close()
	if rep.LogErr != nil && runErr == nil {
		runErr = &StepError{Host: dep.Hosts[len(dep.Hosts)-1], Step: "log", ExitCode: -1, Err: rep.LogErr}
		rep.State, dep.ExitCode = nixdeploy.StateFailed, 1
	}
	dep.State = rep.State
	errText := ""
	if runErr != nil {
		errText = r.red.plain(runErr.Error())
	}
	dep.Error = errText
	log.Info("deployment ended", "state", string(rep.State), "summary", rep.Summary())
	return rep, runErr
}

func (d *Deployer) recordRevision(ctx context.Context, id int64, rev string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := d.opts.Store.SetRevision(ctx, id, rev); err != nil {
		d.log.Error("record the deployed revision", "deployment", id, "err", err)
	}
}

// plans checks a deployment's hosts and action and plans each host.
func (d *Deployer) plans(dep *nixdeploy.Deployment) ([]*Plan, error) {
	if len(dep.Hosts) == 0 {
		return nil, fmt.Errorf("%w: no hosts given", nixdeploy.ErrInvalidInput)
	}
	seen := map[string]bool{}
	var out []*Plan
	for _, h := range dep.Hosts {
		if seen[h] {
			return nil, fmt.Errorf("%w: host %s is named twice", nixdeploy.ErrInvalidInput, h)
		}
		seen[h] = true
		p, err := d.Plan(h, dep.Action)
		if err != nil {
			return nil, err
		}
		d.shape(p, dep.Guard)
		out = append(out, p)
	}
	return out, nil
}

// secrets are the configured values to redact, read now so a value set
// after New is honoured.
func (d *Deployer) secrets() []string {
	out := append([]string(nil), d.opts.RedactValues...)
	out = append(out, botSecrets()...)
	for _, name := range d.cfg.Secrets.RedactEnv {
		v := os.Getenv(name)
		if v == "" {
			continue
		}
		if len(strings.TrimSpace(v)) < minSecretLen {
			d.log.Warn("secret too short to redact", "env", name)
		}
		out = append(out, v)
	}
	return out
}
