package deployer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixdeploy/nixdeploy"
)

// run is one deployment in progress.
type run struct {
	d   *Deployer
	dep *nixdeploy.Deployment
	em  *emitter
	red *redactor
	dl  *dialer
	log *slog.Logger

	runner executor // nil until the first runner step

	// planFingerprint is the fingerprint of the plans this run runs, set
	// when the deployment carries an approved one to compare it with.
	planFingerprint string

	// resets is the run's one power reset per host (recover.go).
	resets resets
	// cursors counts the emitter cursors registered (supervise.go).
	cursors int
}

func (d *Deployer) newRun(ctx context.Context, dep *nixdeploy.Deployment, sinks []Sink, log *slog.Logger) *run {
	return d.newRunAt(ctx, dep, 0, sinks, log)
}

// newRunAt numbers the run's lines from seq+1.
func (d *Deployer) newRunAt(ctx context.Context, dep *nixdeploy.Deployment, seq int64, sinks []Sink, log *slog.Logger) *run {
	red := newRedactor(d.secrets())
	return &run{
		d:   d,
		dep: dep,
		red: red,
		em:  newEmitterAt(ctx, &d.opts, dep.ID, seq, red, sinks, log),
		dl:  d.newDialer(log),
		log: log,
	}
}

func (d *Deployer) newDialer(log *slog.Logger) *dialer {
	return &dialer{
		signer:        d.opts.ClientKey,
		timeout:       d.opts.ConnectTimeout,
		keepalive:     d.opts.KeepaliveInterval,
		keepaliveMax:  d.opts.KeepaliveMax,
		jump:          d.jump,
		log:           log,
		clientVersion: "SSH-2.0-nixdeploy",
	}
}

func (r *run) close() {
	if r.runner != nil {
		r.runner.close()
	}
	r.dl.close()
}

// runnerExec returns the runner, connecting (again) when needed.
func (r *run) runnerExec(ctx context.Context) (executor, error) {
	if r.runner != nil && r.runner.usable() {
		return r.runner, nil
	}
	if r.runner != nil {
		r.runner.close()
		r.runner = nil
	}
	var ex executor
	if r.d.runner == nil {
		var err error
		if ex, err = newLocalExec(r.d.opts.MaxLineBytes, r.d.opts.KillGrace); err != nil {
			return nil, err
		}
	} else {
		c, err := r.dl.dial(ctx, *r.d.runner)
		if err != nil {
			return nil, err
		}
		ex = &sshExec{c: c, maxLine: r.d.opts.MaxLineBytes, killGrace: r.d.opts.KillGrace}
	}
	r.runner = ex
	return ex, nil
}

// hostRun is one host's plan in progress.
type hostRun struct {
	*run
	plan *Plan
	host nixdeploy.Host
	log  *slog.Logger

	target   *sshExec
	tmp      string
	locked   *nixdeploy.Lock
	agent    *localAgent
	unlocks  int
	before   string
	after    string
	warnings []string
	guard    *armedGuard // set once the rollback guard is armed (guard.go)
	// resume is the supervised step a reattach follows instead of
	// starting it (reattach.go).
	resume *nixdeploy.RemoteStep
}

func (h *hostRun) targetEndpoint() (endpoint, error) {
	pk, err := h.d.opts.HostKeys.HostPublicKey(h.host.Name)
	if err != nil {
		return endpoint{}, fmt.Errorf("read the pinned host key of %s: %w", h.host.Name, err)
	}
	return endpoint{name: h.host.Name, user: h.d.opts.TargetUser, addr: h.host.SSHAddr(), key: pinnedKey(h.host.Name, pk)}, nil
}

func (h *hostRun) connectTarget(ctx context.Context) error {
	if h.target != nil && h.target.usable() {
		return nil
	}
	ep, err := h.targetEndpoint()
	if err != nil {
		return err
	}
	c, err := h.dl.dial(ctx, ep)
	if err != nil {
		return err
	}
	h.setTarget(c)
	return nil
}

func (h *hostRun) setTarget(c *client) {
	if h.target != nil {
		h.target.close()
	}
	h.target = &sshExec{c: c, maxLine: h.d.opts.MaxLineBytes, killGrace: h.d.opts.KillGrace}
}

// host runs one host's plan. Steps run in order; after a failure or cancel
// only cleanup steps run.
func (r *run) host(ctx context.Context, p *Plan) HostReport { return r.hostAt(ctx, p, nil) }

// hostAt runs p from the supervised step resume (a reattach) when it is
// set: the steps before it ran before the restart.
func (r *run) hostAt(ctx context.Context, p *Plan, resume *nixdeploy.RemoteStep) HostReport {
	h := &hostRun{run: r, plan: p, host: p.Host, log: r.log.With("host", p.Host.Name), locked: &nixdeploy.Lock{}}
	if p.Locked != nil {
		l := *p.Locked
		h.locked = &l
	}
	from := h.resumeAt(resume)
	defer func() {
		if h.target != nil {
			h.target.close()
		}
		if h.agent != nil {
			h.agent.close()
		}
	}()
	rep := HostReport{Host: p.Host.Name, Outcome: OutcomeSucceeded}
	for i, st := range p.Steps {
		if i < from {
			continue
		}
		if i == from && resume != nil {
			st.Timeout = h.remaining(resume)
			st.Wipes = false // checked when it started
		}
		if rep.Outcome != OutcomeSucceeded && !st.Cleanup {
			continue
		}
		if st.Kind == KindCommand && st.Cleanup && h.tmp == "" && usesTemp(st.Argv) {
			continue
		}
		if (st.Kind == KindLock || st.Kind == KindDisks) && p.Locked != nil {
			// Resolved before the approval: what was approved runs.
			continue
		}
		if st.Kind == KindGuardCheck && !h.guardAfter(ctx, rep) {
			continue
		}
		if st.Wipes {
			if err := h.approvedPlan(); err != nil {
				h.em.event(h.host.Name, st.Name, "%s not run: %v", st.Name, err)
				rep.Outcome, rep.Step, rep.ExitCode, rep.Err = OutcomeFailed, st.Name, -1, err
				continue
			}
		}
		code, err := h.step(ctx, st)
		if err == nil {
			continue
		}
		if errors.Is(err, ErrDetached) {
			// The step goes on, and the next start reattaches to it:
			// its run directory and keys stay for it (its supervisor
			// removes the keys when it ends), so no cleanup runs.
			rep.Outcome, rep.Step, rep.ExitCode, rep.Err = OutcomeCancelled, st.Name, -1, err
			break
		}
		if rep.Outcome != OutcomeSucceeded {
			// A cleanup failing after another failure: the first failure
			// is the one reported; this one is logged and shown. A
			// rollback by the guard is reported with it (guard.go).
			if errors.Is(err, nixdeploy.ErrRolledBack) {
				rep.Err = err
			}
			continue
		}
		rep.Outcome, rep.Step, rep.ExitCode, rep.Err = OutcomeFailed, st.Name, code, err
		if ctx.Err() != nil {
			rep.Outcome = OutcomeCancelled
		}
	}
	h.recoverUnreachable(ctx, &rep)
	rep.Before, rep.After, rep.Warnings = h.before, h.after, h.warnings
	rep.Revision = h.locked.Revision
	return rep
}

// approvedPlan checks, right before the step that wipes the disk, that an
// approved deployment runs the plan that was approved: the fingerprint of
// the plans this run was built from must be the one the approval carries.
func (h *hostRun) approvedPlan() error {
	want := h.dep.Fingerprint
	if want == "" {
		// Not approved in chat: the terminal's typed confirmation stands
		// for the approval.
		return nil
	}
	if h.planFingerprint != want {
		h.log.Warn("approved plan differs from the plan to run; disk not touched", "approved", want, "plan", h.planFingerprint)
		return fmt.Errorf("%w: %s was not touched", nixdeploy.ErrPlanChanged, h.host.Disk)
	}
	return nil
}

func usesTemp(argv []string) bool {
	for _, a := range argv {
		if strings.Contains(a, TempDir) {
			return true
		}
	}
	return false
}

// step runs one step, streams and records it, and returns its error and
// exit code (0 on success, -1 when there is none).
func (h *hostRun) step(ctx context.Context, st Step) (int, error) {
	parent := ctx
	if st.Cleanup {
		parent = context.WithoutCancel(ctx)
	}
	sctx, cancel := context.WithTimeout(parent, st.Timeout)
	defer cancel()

	name := h.host.Name
	log := h.log.With("step", st.Name)
	res := nixdeploy.StepResult{Host: name, Name: st.Name, StartedAt: h.d.opts.Now().UTC()}
	switch {
	case h.resume != nil && h.resume.Step == st.Name:
		// A reattach: the start was logged before the restart.
	case len(st.Argv) > 0:
		h.em.event(name, st.Name, "%s on %s: %s", st.Name, st.Where, shellJoin(fill(st.Argv, h.tmp, h.locked)))
	default:
		h.em.event(name, st.Name, "%s: %s", st.Name, h.describe(st))
	}
	log.Info("step started")

	err := h.exec(sctx, st)
	h.em.barrier()
	code := 0
	if err != nil {
		code = -1
		var ee *ExitError
		if errors.As(err, &ee) {
			code = ee.Code
		}
		switch {
		case errors.Is(err, ErrDetached):
			// A shutdown left the step running on the runner.
		case ctx.Err() != nil && !st.Cleanup:
			err = fmt.Errorf("cancelled: %w", context.Cause(ctx))
		case errors.Is(sctx.Err(), context.DeadlineExceeded) && errors.Is(err, context.DeadlineExceeded):
			if err == context.DeadlineExceeded {
				err = fmt.Errorf("%w after %s", ErrStepTimeout, st.Timeout)
			} else {
				err = fmt.Errorf("%w after %s: %v", ErrStepTimeout, st.Timeout, err)
			}
		}
		if ee != nil {
			if last := h.em.lastError(name, st.Name); last != "" {
				err = fmt.Errorf("%w (last output: %s)", err, truncate(last, 300))
			}
		}
	}
	res.EndedAt = h.d.opts.Now().UTC()
	res.ExitCode = code
	if st.Kind == KindVerify {
		res.Before, res.After = h.before, h.after
	}
	if st.Kind == KindProbe {
		res.Before = h.before
	}
	took := res.EndedAt.Sub(res.StartedAt).Round(time.Millisecond)
	if err != nil {
		res.Error = h.red.plain(err.Error())
		h.em.event(name, st.Name, "%s failed after %s: %s", st.Name, took, res.Error)
		log.Warn("step failed", "exit", code, "err", res.Error)
	} else {
		h.em.event(name, st.Name, "%s done in %s", st.Name, took)
		log.Info("step done", "took", took)
	}
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer rcancel()
	if serr := h.d.opts.Store.RecordStep(rctx, h.dep.ID, res); serr != nil {
		log.Error("record step", "err", serr)
	}
	return code, err
}

// describe says what a built-in step does, for its start event.
func (h *hostRun) describe(st Step) string {
	switch st.Kind {
	case KindPreflight:
		return "checking the host key and the key preflight"
	case KindConnect:
		if h.plan.Action == nixdeploy.ActionInstall || h.plan.Action == nixdeploy.ActionFlash {
			return "connecting to the runner"
		}
		return "connecting to the runner and " + h.host.Name + " with pinned host keys"
	case KindWaitSSH:
		return "waiting for " + h.host.Name + " to come back with its pinned host key"
	case KindVerify:
		return "checking " + h.d.opts.CurrentSystemPath + " and the systemd state"
	case KindImage:
		return "hashing the staged image and comparing it with the approved one"
	case KindFlash:
		return "writing the image to " + h.host.Name + "'s eMMC through its BMC"
	case KindGuardCheck:
		return "reconnecting to " + h.host.Name + " with its pinned host key, running the health checks, then disarming the rollback guard"
	case KindHealth:
		return "running the health checks of " + h.host.Name
	}
	return string(st.Kind)
}

// exec carries out a step by kind.
func (h *hostRun) exec(ctx context.Context, st Step) error {
	switch st.Kind {
	case KindPreflight:
		return h.preflight(ctx)
	case KindConnect:
		if _, err := h.runnerExec(ctx); err != nil {
			return err
		}
		if h.plan.Action != nixdeploy.ActionInstall && h.plan.Action != nixdeploy.ActionFlash {
			// The installer the target runs now has a throwaway key;
			// for every other action its pinned key is checked before
			// anything runs anywhere.
			return h.connectTarget(ctx)
		}
		return nil
	case KindTempDir:
		out, err := h.capture(ctx, st)
		if err != nil {
			return err
		}
		tmp := strings.TrimSpace(out)
		// The path goes into NIX_SSHOPTS, which is split like a shell
		// line: only words that need no quoting are usable.
		if !filepath.IsAbs(tmp) || filepath.Clean(tmp) != tmp || tmp == "/" || shellQuote(tmp) != tmp {
			return fmt.Errorf("mktemp printed %q, which is not a usable directory", truncate(tmp, 100))
		}
		h.tmp = tmp
		return nil
	case KindLock:
		return h.lock(ctx, st)
	case KindDisks:
		return h.disks(ctx, st)
	case KindCommand:
		return h.command(ctx, st, nil)
	case KindWaitSSH:
		return h.waitSSH(ctx)
	case KindProbe:
		out, err := h.capture(ctx, st)
		if err != nil {
			return fmt.Errorf("read %s on %s: %w", h.d.opts.CurrentSystemPath, h.host.Name, err)
		}
		h.before = strings.TrimSpace(out)
		return nil
	case KindVerify:
		return h.verify(ctx)
	case KindImage:
		return h.checkImage(ctx, st)
	case KindFlash:
		return h.flash(ctx, st)
	case KindGuardArm:
		return h.armGuard(ctx, st)
	case KindGuardCheck:
		return h.guardCheck(ctx)
	case KindHealth:
		return h.runChecks(ctx, st.Name, h.d.cfg.ChecksFor(h.host.Name), false)
	}
	return fmt.Errorf("unknown step kind %q", st.Kind)
}

// capture runs a command step and returns its stdout (bounded), which is
// also streamed.
func (h *hostRun) capture(ctx context.Context, st Step) (string, error) {
	var buf capBuffer
	err := h.command(ctx, st, &buf)
	return buf.String(), err
}

// capBuffer keeps the first 64 KiB of a command's stdout.
type capBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (c *capBuffer) add(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.b.Len() < 64<<10 {
		c.b.Write(b)
		c.b.WriteByte('\n')
	}
}

func (c *capBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.String()
}

func (h *hostRun) executor(ctx context.Context, w Where) (executor, error) {
	switch w {
	case WhereRunner:
		return h.runnerExec(ctx)
	case WhereTarget:
		if err := h.connectTarget(ctx); err != nil {
			return nil, err
		}
		return h.target, nil
	}
	return nil, fmt.Errorf("a command cannot run on %q", w)
}

// command runs st.Argv where st says, streaming its output.
func (h *hostRun) command(ctx context.Context, st Step, capture *capBuffer) error {
	ex, err := h.executor(ctx, st.Where)
	if err != nil {
		return err
	}
	var stdin io.Reader
	if st.Stdin != InputNone {
		data, err := h.input(st.Stdin)
		if err != nil {
			return err
		}
		defer clear(data)
		stdin = bytes.NewReader(data)
	}
	argv := fill(st.Argv, h.tmp, h.locked)
	if st.BuildOnRemoteIfForeign {
		sys, err := h.runnerSystem(ctx)
		if err != nil {
			return err
		}
		if sys != h.host.System {
			argv = append([]string{argv[0], "--build-on", "remote"}, argv[1:]...)
			h.em.event(h.host.Name, st.Name, "the runner is %s and %s is %s: building on the target (--build-on remote)", sys, h.host.Name, h.host.System)
		}
	}
	if err := checkFilled(argv); err != nil {
		return err
	}
	if supervised(st) && capture == nil {
		return h.supervise(ctx, st, argv)
	}
	c := h.cmd(st, argv, stdin, capture)
	if st.Agent {
		if err := h.withAgent(ctx, ex, &c); err != nil {
			return err
		}
	}
	return ex.run(ctx, c)
}

func (h *hostRun) cmd(st Step, argv []string, stdin io.Reader, capture *capBuffer) command {
	name := h.host.Name
	return command{
		argv:  argv,
		stdin: stdin,
		out: func(stream nixdeploy.Stream, b []byte) {
			if capture != nil && stream == nixdeploy.StreamStdout {
				capture.add(b)
			}
			h.em.line(name, st.Name, stream, b)
		},
		note: func(text string) { h.em.event(name, st.Name, "%s", text) },
	}
}

// input reads key material for a step's stdin. The private key's lines are
// registered for redaction before any byte of it is sent.
func (h *hostRun) input(in Input) ([]byte, error) {
	switch in {
	case InputHostKey:
		b, err := h.d.opts.HostKeys.HostPrivateKey(h.host.Name)
		if err != nil {
			return nil, fmt.Errorf("read the host key of %s: %w", h.host.Name, err)
		}
		h.red.addPEM(b)
		return b, nil
	case InputHostPub:
		pk, err := h.d.opts.HostKeys.HostPublicKey(h.host.Name)
		if err != nil {
			return nil, fmt.Errorf("read the host public key of %s: %w", h.host.Name, err)
		}
		return append(bytes.TrimSpace(ssh.MarshalAuthorizedKey(pk)), []byte(" root@"+h.host.Name+"\n")...), nil
	case InputKnownHosts:
		pk, err := h.d.opts.HostKeys.HostPublicKey(h.host.Name)
		if err != nil {
			return nil, fmt.Errorf("read the pinned host key of %s: %w", h.host.Name, err)
		}
		return []byte(KnownHostsLine(h.host.Address, h.host.Port, pk)), nil
	case InputDiskKey:
		b, err := h.d.opts.HostKeys.DiskKey(h.host.Name)
		if err != nil {
			return nil, fmt.Errorf("read the disk key of %s: %w", h.host.Name, err)
		}
		h.red.add(string(bytes.TrimSpace(b)))
		return b, nil
	case InputInitrdKey:
		b, err := h.d.opts.HostKeys.InitrdHostPrivateKey(h.host.Name)
		if err != nil {
			return nil, fmt.Errorf("read the initrd host key of %s: %w", h.host.Name, err)
		}
		h.red.addPEM(b)
		return b, nil
	}
	return nil, fmt.Errorf("unknown input %q", in)
}

// preflight checks that the private key the host will receive is the one
// its .pub pins, since after the wipe the host is only trusted by that key,
// then runs the configured preflight.
func (h *hostRun) preflight(ctx context.Context) error {
	name := h.host.Name
	pub, err := h.d.opts.HostKeys.HostPublicKey(name)
	if err != nil {
		return fmt.Errorf("read the pinned host key of %s: %w", name, err)
	}
	if pub.Type() != ssh.KeyAlgoED25519 {
		return fmt.Errorf("the pinned host key of %s is %s, want ssh-ed25519", name, pub.Type())
	}
	priv, err := h.d.opts.HostKeys.HostPrivateKey(name)
	if err != nil {
		return fmt.Errorf("read the host key of %s: %w", name, err)
	}
	h.red.addPEM(priv)
	signer, err := ssh.ParsePrivateKey(priv)
	clear(priv)
	if err != nil {
		return fmt.Errorf("the host key of %s does not parse as an unencrypted OpenSSH private key", name)
	}
	if !bytes.Equal(signer.PublicKey().Marshal(), pub.Marshal()) {
		return fmt.Errorf("the host key of %s does not match its .pub (%s); fix the key store before installing", name, ssh.FingerprintSHA256(pub))
	}
	h.em.event(name, "preflight", "host key %s matches the pinned .pub", ssh.FingerprintSHA256(pub))
	if err := h.preflightLUKS(); err != nil {
		return err
	}
	if h.d.opts.Preflight != nil {
		if err := h.d.opts.Preflight(ctx, name); err != nil {
			return fmt.Errorf("key preflight: %w", err)
		}
	}
	return nil
}

// waitSSH waits for an installed host to come back presenting its pinned
// key, which proves the new system booted. Refused or timed-out connections
// are retried with backoff; a wrong key is retried only within RebootGrace
// of the start of the wait (right after nixos-anywhere), while the installer
// may still be shutting down, and is a hard failure after it.
func (h *hostRun) waitSSH(ctx context.Context) error {
	ep, err := h.targetEndpoint()
	if err != nil {
		return err
	}
	start := h.d.opts.Now()
	backoff := h.d.opts.WaitBackoff
	for attempt := 1; ; attempt++ {
		if h.host.InitrdSSH != nil && h.host.LUKS() {
			// The initrd and the booted system answer on different
			// ports; try both in turn. The initrd gets the passphrase
			// only when it presents its pinned key.
			if _, err := h.tryUnlock(ctx); err != nil {
				return err
			}
		}
		c, err := h.dl.dial(ctx, ep)
		if err == nil {
			h.setTarget(c)
			h.em.event(h.host.Name, "wait-for-ssh", "%s is up and presents its pinned host key", h.host.Name)
			return nil
		}
		var hk *HostKeyError
		switch {
		case errors.As(err, &hk) && h.d.opts.Now().Sub(start) >= h.d.opts.RebootGrace:
			return fmt.Errorf("%s came back with a different host key, so the installed system is not the one expected: %w", h.host.Name, err)
		case errors.Is(err, ErrAuth):
			return fmt.Errorf("%s presents its pinned host key but refuses the bot: %w", h.host.Name, err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (last attempt: %v)", ctx.Err(), err)
		}
		if attempt == 1 || attempt%5 == 0 {
			h.em.event(h.host.Name, "wait-for-ssh", "waiting for %s (attempt %d): %v", h.host.Name, attempt, err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last attempt: %v)", ctx.Err(), err)
		case <-t.C:
		}
		backoff = min(2*backoff, 15*h.d.opts.WaitBackoff)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
