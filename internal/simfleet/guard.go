package simfleet

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nixdeploy/nixdeploy/deployer"
)

// The rollback guard on a simulated host: the deployer's arm script (a
// link to the running system and a systemd-run timer), systemctl is-active
// and stop of the guard's units, and rm of its link. The timer is a real
// one: when it elapses undisarmed, the host runs its saved system again,
// as switch-to-configuration test of it would make it.

// simGuard is one armed guard.
type simGuard struct {
	link  string
	saved string
	timer *time.Timer
	fired bool
}

// guardExec answers the guard's commands; ok is false for any other.
func (t *target) guardExec(p *proc) (code int, ok bool) {
	a := p.argv
	switch {
	case len(a) == 8 && a[0] == "sh" && a[1] == "-c" && a[2] == deployer.ArmScript && a[3] == "sh":
		return t.arm(p, a[4], a[5], a[6], a[7]), true
	case len(a) == 3 && a[0] == "systemctl" && a[1] == "is-active":
		return t.isActive(p, a[2]), true
	case len(a) == 3 && a[0] == "systemctl" && a[1] == "stop":
		return t.stopUnit(p, a[2]), true
	case len(a) == 4 && a[0] == "rm" && a[1] == "-f" && a[2] == "--":
		// Only the guard's link exists to be removed.
		return 0, true
	}
	return 0, false
}

// arm is the arm script: save the running system, start the timer.
func (t *target) arm(p *proc, link, window, unit, current string) int {
	if current != currentSystem {
		fmt.Fprintf(p.stderr, "readlink: %s: not simulated\n", current)
		return 1
	}
	d, err := systemdSpan(window)
	if err != nil {
		fmt.Fprintf(p.stderr, "Failed to parse timer value: %s\n", window)
		return 1
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.guards == nil {
		t.guards = map[string]*simGuard{}
	}
	if _, dup := t.guards[unit]; dup {
		fmt.Fprintf(p.stderr, "Failed to start transient timer unit: Unit %s.timer was already loaded or has a fragment file.\n", unit)
		return 1
	}
	g := &simGuard{link: link, saved: t.generations[t.current]}
	g.timer = time.AfterFunc(d, func() { t.fire(g) })
	t.guards[unit] = g
	fmt.Fprintf(p.stdout, "guard %s armed for %s: it re-activates %s unless disarmed\n", unit, window, g.saved)
	return 0
}

// fire re-activates the saved system.
func (t *target) fire(g *simGuard) {
	t.mu.Lock()
	defer t.mu.Unlock()
	g.fired = true
	if i := slices.Index(t.generations, g.saved); i >= 0 {
		t.current = i
	}
}

// isActive is systemctl is-active of one unit: the guard's timer is active
// while loaded (an elapsed one too, RemainAfterElapse=yes), its service
// never seen running (it is instant here); other units are active unless
// the host's checks are set to fail.
func (t *target) isActive(p *proc, unit string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	state := "active"
	switch name, kind, _ := strings.Cut(unit, "."); {
	case strings.HasPrefix(unit, "nixdeploy-guard-"):
		if _, loaded := t.guards[name]; !loaded || kind != "timer" {
			state = "inactive"
		}
	case t.failChecks:
		state = "failed"
	}
	fmt.Fprintln(p.stdout, state)
	if state != "active" {
		return 3
	}
	return 0
}

// stopUnit is systemctl stop of the guard's timer.
func (t *target) stopUnit(p *proc, unit string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	name, kind, _ := strings.Cut(unit, ".")
	g, ok := t.guards[name]
	if !ok || kind != "timer" {
		fmt.Fprintf(p.stderr, "Failed to stop %s: Unit %s not loaded.\n", unit, unit)
		return 5
	}
	g.timer.Stop()
	delete(t.guards, name)
	return 0
}

// stopGuards stops every timer, when the fleet closes.
func (t *target) stopGuards() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, g := range t.guards {
		g.timer.Stop()
	}
}

// systemdSpan parses the time spans the deployer writes: "300s", "2500ms".
func systemdSpan(s string) (time.Duration, error) {
	unit := time.Second
	num := strings.TrimSuffix(s, "s")
	if strings.HasSuffix(s, "ms") {
		unit, num = time.Millisecond, strings.TrimSuffix(s, "ms")
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad time span %q", s)
	}
	return time.Duration(n) * unit, nil
}
