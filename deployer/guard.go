package deployer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// The rollback guard. Before a guarded switch or test activates anything,
// the target gets a transient systemd timer (systemd-run --on-active, see
// systemd-run(1), "Timer options") that re-activates the system running
// before, through `switch-to-configuration test` of a link to it saved
// under the GC roots. The activation itself is `nixos-rebuild test`, which
// leaves the boot default alone (nixos-rebuild-ng's services.py,
// _activate_system: only SWITCH and BOOT call nix.set_profile). After it,
// the bot reconnects with the pinned key, runs the health checks and only
// then stops the timer; for a switch, `nixos-rebuild boot` then makes the
// new system the boot default (set_profile and switch-to-configuration
// boot, without activating a second time). A bot that cannot reach the
// host again does nothing: the host rolls itself back when the window
// ends, and the bot reports it when it sees the host again.

// Step kinds of the guard and the health checks.
const (
	// KindGuardArm saves the running system's link and arms the timer;
	// its argv runs on the target with GuardID filled in.
	KindGuardArm Kind = "guard-arm"
	// KindGuardCheck reconnects, runs the health checks and disarms the
	// guard, or waits for the guard's rollback and confirms it.
	KindGuardCheck Kind = "guard-check"
	// KindHealth runs the health checks of an unguarded switch or test.
	KindHealth Kind = "health"
)

// GuardID stands for the deployment id in a guard step's argv: the
// guard's unit and link are named after the deployment.
const GuardID = "<id>"

// guardUnitPrefix names the guard's transient units: systemd-run --unit
// with a timer option creates <name>.timer and <name>.service
// (systemd-run(1), --unit=).
const guardUnitPrefix = "nixdeploy-guard-"

// armScript saves the link to the running system under the GC roots (a
// symlink in /nix/var/nix/gcroots is a root, so the previous system cannot
// be collected while the guard may need it) and arms the timer. The
// command is the saved link's switch-to-configuration test, as the issue
// asks: the profile's generations are not touched by a rollback, and the
// boot default stays what it was. --collect unloads the units once the
// service ran, whatever its result (systemd-run(1), --collect); --quiet
// drops the "Running timer as unit" lines.
const armScript = `set -e
link=$1 window=$2 unit=$3 current=$4
sys=$(readlink "$current")
[ -n "$sys" ]
ln -sfn "$sys" "$link"
systemd-run --on-active="$window" --unit="$unit" --description="nixdeploy rollback guard" --collect --quiet "$link/bin/switch-to-configuration" test
echo "guard $unit armed for $window: it re-activates $sys unless disarmed"`

// ArmScript is exported so a simulated host (internal/simfleet) recognises
// exactly the guard's arm step.
const ArmScript = armScript

// GuardError is a guarded deployment the guard rolled back.
type GuardError struct {
	Host string
	// Reason says why the guard was not disarmed.
	Reason string
	// System is what the host runs again.
	System string
	Err    error
}

func (e *GuardError) Error() string {
	return fmt.Sprintf("rolled back by the guard: %s; %s runs %s again", e.Reason, e.Host, e.System)
}

// Is makes errors.Is(err, nixdeploy.ErrRolledBack) work.
func (e *GuardError) Is(target error) bool { return target == nixdeploy.ErrRolledBack }

func (e *GuardError) Unwrap() error { return e.Err }

// HealthError lists the health checks that failed.
type HealthError struct {
	Host   string
	Failed []string
}

func (e *HealthError) Error() string {
	return fmt.Sprintf("health check failed on %s: %s", e.Host, strings.Join(e.Failed, "; "))
}

// Is makes a failed health check a verification failure.
func (e *HealthError) Is(target error) bool { return target == ErrVerify }

// armedGuard is a guard armed on the host of a hostRun.
type armedGuard struct {
	unit   string
	link   string
	at     time.Time
	window time.Duration
	// failed is the step that failed after the guard was armed, with
	// its error: the guard is then left to roll the host back.
	failed    string
	failedErr error
}

func (g *armedGuard) end() time.Time { return g.at.Add(g.window) }

// shape adds the health checks and, for a guarded deployment, the guard
// to a switch or test plan. Other actions are left as they are: the guard
// protects an activation, and boot, dry-activate and rollback have none
// of their own to protect (a guarded rollback would guard the old system).
func (d *Deployer) shape(p *Plan, guard bool) {
	if p.Action != nixdeploy.ActionSwitch && p.Action != nixdeploy.ActionTest {
		if guard {
			p.Notes = append(p.Notes, "the rollback guard applies to switch and test only; "+string(p.Action)+" runs without it")
		}
		return
	}
	i := slices.IndexFunc(p.Steps, func(s Step) bool { return s.Name == "nixos-rebuild" })
	if i < 0 {
		return
	}
	h := p.Host
	checks := d.cfg.ChecksFor(h.Name)
	t := d.opts.Timeouts
	checkTime := checks.Settle + t.Verify
	for _, c := range checks.Checks {
		checkTime += c.Timeout
	}
	rest := slices.Clone(p.Steps[i+1:])
	steps := slices.Clone(p.Steps[:i])
	if !guard {
		steps = append(steps, p.Steps[i])
		if len(checks.Checks) > 0 {
			steps = append(steps, Step{Name: "health", Kind: KindHealth, Where: WhereTarget, Timeout: checkTime})
		}
		p.Steps = append(steps, rest...)
		return
	}
	window := d.cfg.Guard.Window.Duration
	rebuild := p.Steps[i]
	rebuild.Argv = d.rebuildArgv(h, "test", false)
	steps = append(steps,
		Step{Name: "arm-guard", Kind: KindGuardArm, Where: WhereTarget, Timeout: t.Command,
			Argv: []string{"sh", "-c", armScript, "sh", d.guardLink(GuardID), systemdSpan(window), guardUnitPrefix + GuardID, d.opts.CurrentSystemPath}},
		rebuild,
		// It runs after a failed activation too (Cleanup): an activation
		// that broke the network also breaks nixos-rebuild's own ssh, and
		// the guard's rollback is then what the report must say.
		Step{Name: "guard-check", Kind: KindGuardCheck, Where: WhereTarget, Timeout: window + d.opts.GuardGrace + checkTime, Cleanup: true},
	)
	if p.Action == nixdeploy.ActionSwitch {
		steps = append(steps, Step{Name: "make-default", Kind: KindCommand, Where: WhereRunner, Argv: d.rebuildArgv(h, "boot", false), Timeout: t.Rebuild, Agent: true})
	}
	p.Steps = append(steps, rest...)
	p.Notes = append(p.Notes, fmt.Sprintf("guarded: unless the bot reconnects, passes the health checks and disarms it within %s of arming, %s re-activates the system it runs now (switch-to-configuration test); the guard cannot undo a bootloader change or state migrations", window, h.Name))
}

// guardLink is where the target keeps the link to the system running
// before the activation.
func (d *Deployer) guardLink(id string) string {
	return strings.TrimRight(d.opts.GuardRoot, "/") + "/" + guardUnitPrefix + id
}

// systemdSpan writes d as a systemd time span (systemd.time(7)): "300s",
// or milliseconds when d is not whole seconds.
func systemdSpan(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}

// armGuard runs the arm step and remembers the guard.
func (h *hostRun) armGuard(ctx context.Context, st Step) error {
	id := strconv.FormatInt(h.dep.ID, 10)
	argv := make([]string, len(st.Argv))
	for i, a := range st.Argv {
		argv[i] = strings.ReplaceAll(a, GuardID, id)
	}
	st.Kind, st.Argv = KindCommand, argv
	at := h.d.opts.Now()
	if err := h.command(ctx, st, nil); err != nil {
		return fmt.Errorf("arm the rollback guard on %s: %w", h.host.Name, err)
	}
	h.guard = &armedGuard{unit: guardUnitPrefix + id, link: h.d.guardLink(id), at: at, window: h.d.cfg.Guard.Window.Duration}
	return nil
}

// guardCheck is the bot's part after a guarded activation: reconnect with
// the pinned key, check, disarm. When the host is not reachable again
// before the window ends, or a check fails, the guard rolls it back; the
// step then waits for that, confirms with verify that the host runs its
// previous system, and fails with a *GuardError.
func (h *hostRun) guardCheck(ctx context.Context) error {
	g := h.guard
	if g == nil {
		return errors.New("the rollback guard was not armed")
	}
	name := h.host.Name
	if g.failed != "" {
		return h.afterFailure(ctx)
	}
	if !h.d.opts.Now().Before(g.end()) {
		// The guard fired before the activation ended: it re-activated
		// the system that was still running, and the new one came after
		// it, unguarded.
		return fmt.Errorf("the activation on %s ended after the guard window (%s), so %s runs the new system unguarded and it is not the boot default; raise [guard] window above the build and activation time",
			name, g.window, name)
	}
	// The connection from before the activation proves nothing about
	// the new system: its sshd, its network, its keys.
	if h.target != nil {
		h.target.close()
		h.target = nil
	}
	if err := h.reconnect(ctx, g.end().Add(h.d.opts.GuardGrace)); err != nil {
		return fmt.Errorf("%s did not come back within the guard window (%s) and its grace (%s); its guard should have rolled it back at %s: %w",
			name, g.window, h.d.opts.GuardGrace, g.end().UTC().Format(time.TimeOnly), err)
	}
	if !h.d.opts.Now().Before(g.end()) {
		return h.rolledBack(ctx, fmt.Sprintf("%s could not be reached with its pinned key within %s of the activation", name, g.window), nil)
	}
	activated, err := h.readCurrent(ctx)
	if err != nil {
		return fmt.Errorf("read %s on %s: %w", h.d.opts.CurrentSystemPath, name, err)
	}
	h.em.event(name, "guard-check", "%s is reachable with its pinned key; running the health checks", name)
	checks := h.d.cfg.ChecksFor(name)
	if err := h.runChecks(ctx, "guard-check", checks, true); err != nil {
		if ctx.Err() != nil {
			return err
		}
		h.em.event(name, "guard-check", "not disarming the guard: %v", err)
		return h.rolledBack(ctx, err.Error(), err)
	}
	// Disarm: stop the timer (systemctl(1), stop). A timer that already
	// elapsed stays loaded (RemainAfterElapse= defaults to yes,
	// systemd.timer(5)), so the stop succeeds either way; whether the
	// guard fired shows in its service and in the running system.
	var out capBuffer
	if err := h.command(ctx, Step{Name: "guard-check", Where: WhereTarget, Argv: []string{"systemctl", "stop", g.unit + ".timer"}}, &out); err != nil {
		return fmt.Errorf("disarm the rollback guard on %s: %w", name, err)
	}
	// Whether the guard fired before the stop is read off the host, not
	// the bot's clock: its service is running, or the activated system
	// is gone again.
	late := fmt.Sprintf("the checks on %s ended after the guard window (%s)", name, g.window)
	if h.guardRunning(ctx) {
		return h.rolledBack(ctx, late, nil)
	}
	if cur, err := h.readCurrent(ctx); err != nil {
		return fmt.Errorf("read %s on %s: %w", h.d.opts.CurrentSystemPath, name, err)
	} else if cur != activated {
		return h.rolledBack(ctx, late, nil)
	}
	h.em.event(name, "guard-check", "guard %s disarmed", g.unit)
	h.removeGuardLink(ctx)
	return nil
}

// reconnect dials the target until it answers with its pinned key and
// takes the bot's key, or until deadline. A refused key or another host
// key is retried too: the new system may have broken either, and the
// guard's rollback brings the old one back.
func (h *hostRun) reconnect(ctx context.Context, deadline time.Time) error {
	ep, err := h.targetEndpoint()
	if err != nil {
		return err
	}
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	backoff := h.d.opts.WaitBackoff
	for attempt := 1; ; attempt++ {
		c, err := h.dl.dial(dctx, ep)
		if err == nil {
			h.setTarget(c)
			return nil
		}
		if attempt == 1 || attempt%5 == 0 {
			h.em.event(h.host.Name, "guard-check", "cannot reach %s yet (attempt %d): %v", h.host.Name, attempt, err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-dctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last attempt: %v)", dctx.Err(), err)
		case <-t.C:
		}
		backoff = min(2*backoff, 15*h.d.opts.WaitBackoff)
	}
}

// rolledBack waits until the guard's window has passed and its service
// ended, then has verify confirm that the host runs the system it ran
// before, and returns the *GuardError that says so.
func (h *hostRun) rolledBack(ctx context.Context, reason string, cause error) error {
	g := h.guard
	name := h.host.Name
	if wait := g.end().Sub(h.d.opts.Now()); wait > 0 {
		h.em.event(name, "guard-check", "waiting %s for the guard to roll %s back", wait.Round(time.Second), name)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w; the guard still rolls %s back at %s", context.Cause(ctx), name, g.end().UTC().Format(time.TimeOnly))
		case <-t.C:
		}
	}
	deadline := h.d.opts.Now().Add(h.d.opts.GuardGrace)
	backoff := h.d.opts.WaitBackoff
	for {
		if h.target == nil || !h.target.usable() {
			if err := h.reconnect(ctx, deadline); err != nil {
				return fmt.Errorf("%s: the guard should have rolled %s back, but it cannot be reached to confirm: %w", reason, name, err)
			}
		}
		cur, err := h.readCurrent(ctx)
		if err == nil && cur == h.before && !h.guardRunning(ctx) {
			break
		}
		if h.d.opts.Now().After(deadline) {
			return fmt.Errorf("%s, and %s still runs %s after the guard window; the guard did not roll it back", reason, name, cur)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		case <-t.C:
		}
		backoff = min(2*backoff, 15*h.d.opts.WaitBackoff)
	}
	// The verify step confirms the old system, as for an action that must
	// not change it.
	h.plan.Expect = ExpectSame
	if err := h.verify(ctx); err != nil {
		return fmt.Errorf("%s; the guard rolled %s back, but: %w", reason, name, err)
	}
	h.em.event(name, "guard-check", "rolled back by the guard: %s runs %s again", name, h.before)
	h.removeGuardLink(ctx)
	return &GuardError{Host: name, Reason: reason, System: h.before, Err: cause}
}

// guardRunning reports whether the guard's service is active, that is
// re-activating the previous system right now (systemctl(1), is-active:
// exit 0 when active).
func (h *hostRun) guardRunning(ctx context.Context) bool {
	var out capBuffer
	err := h.command(ctx, Step{Name: "guard-check", Where: WhereTarget, Argv: []string{"systemctl", "is-active", h.guard.unit + ".service"}}, &out)
	return err == nil
}

func (h *hostRun) readCurrent(ctx context.Context) (string, error) {
	var out capBuffer
	if err := h.command(ctx, Step{Name: "guard-check", Where: WhereTarget, Argv: []string{"readlink", h.d.opts.CurrentSystemPath}}, &out); err != nil {
		return "", err
	}
	return strings.TrimSpace(out.String()), nil
}

// removeGuardLink drops the saved link once the guard is done with it; a
// failure only leaves a GC root behind, so it is logged, not fatal.
func (h *hostRun) removeGuardLink(ctx context.Context) {
	if err := h.command(ctx, Step{Name: "guard-check", Where: WhereTarget, Argv: []string{"rm", "-f", "--", h.guard.link}}, nil); err != nil {
		h.log.Warn("remove the guard's link", "link", h.guard.link, "err", err)
	}
}

// runChecks waits the settle time and runs the host's health checks, each
// under its timeout, with their output in the log. baseline adds systemd's
// own verdict (systemctl is-system-running), which verify checks after an
// unguarded activation but a guard must see before it is disarmed.
func (h *hostRun) runChecks(ctx context.Context, step string, checks nixdeploy.HostChecks, baseline bool) error {
	name := h.host.Name
	if checks.Settle > 0 {
		h.em.event(name, step, "settling for %s before the checks", checks.Settle)
		t := time.NewTimer(checks.Settle)
		select {
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		case <-t.C:
		}
	}
	var failed []string
	run := func(timeout time.Duration, argv ...string) (string, error) {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		var out capBuffer
		err := h.command(cctx, Step{Name: step, Where: WhereTarget, Argv: argv}, &out)
		if err != nil && errors.Is(cctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("%w after %s", ErrStepTimeout, timeout)
		}
		return firstLine(out.String()), err
	}
	if baseline {
		state, err := run(h.d.opts.Timeouts.Verify, "systemctl", "is-system-running", "--wait")
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if state != "running" {
			failed = append(failed, fmt.Sprintf("%s is %s", name, orUnknown(state)))
			h.em.event(name, step, "check systemd: %s (%v)", orUnknown(state), err)
		} else {
			h.em.event(name, step, "check systemd: running")
		}
	}
	for _, c := range checks.Checks {
		argv := []string{"sh", "-c", c.Command}
		if c.Unit != "" {
			argv = []string{"systemctl", "is-active", c.Unit}
		}
		out, err := run(c.Timeout, argv...)
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if err != nil {
			what := err.Error()
			if c.Unit != "" && out != "" {
				what = out
			}
			failed = append(failed, c.Name()+": "+what)
			h.em.event(name, step, "check %s failed: %s", c.Name(), what)
			continue
		}
		h.em.event(name, step, "check %s passed", c.Name())
	}
	if len(failed) > 0 {
		return &HealthError{Host: name, Failed: failed}
	}
	return nil
}

// guardAfter decides whether the guard-check step runs: always when
// everything before it succeeded; after a failure only when the guard was
// armed, to wait for its rollback and report it. A cancelled deployment
// does not wait: its guard rolls the host back by itself.
func (h *hostRun) guardAfter(ctx context.Context, rep HostReport) bool {
	if rep.Outcome == OutcomeSucceeded {
		return true
	}
	if h.guard == nil {
		return false
	}
	if ctx.Err() != nil {
		h.em.event(h.host.Name, "guard-check", "not waiting for the guard: it rolls %s back at %s", h.host.Name, h.guard.end().UTC().Format(time.TimeOnly))
		return false
	}
	h.guard.failed, h.guard.failedErr = rep.Step, rep.Err
	return true
}

// afterFailure handles a guard left armed by a failed step. When the host
// still runs the system from before (the build or evaluation failed,
// nothing was activated), there is nothing to roll back: the guard is
// disarmed and the step's own failure is the report. Otherwise, or when
// the host cannot be reached, the guard is left to roll it back, and
// that is what the report says.
func (h *hostRun) afterFailure(ctx context.Context) error {
	g := h.guard
	name := h.host.Name
	reason := fmt.Sprintf("step %s failed (%v)", g.failed, g.failedErr)
	if h.target == nil || !h.target.usable() {
		if err := h.reconnect(ctx, h.d.opts.Now().Add(h.d.opts.ConnectTimeout)); err != nil {
			return h.rolledBack(ctx, reason, g.failedErr)
		}
	}
	cur, err := h.readCurrent(ctx)
	if err != nil || cur != h.before {
		return h.rolledBack(ctx, reason, g.failedErr)
	}
	if err := h.command(ctx, Step{Name: "guard-check", Where: WhereTarget, Argv: []string{"systemctl", "stop", g.unit + ".timer"}}, nil); err != nil {
		// Left armed, the guard re-activates the system that runs anyway.
		h.log.Warn("disarm the guard after a failed step", "err", err)
		return nil
	}
	h.em.event(name, "guard-check", "%s still runs %s, so there is nothing to roll back; guard %s disarmed", name, cur, g.unit)
	h.removeGuardLink(ctx)
	return nil
}
