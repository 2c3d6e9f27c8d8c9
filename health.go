package nixdeploy

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// HealthCheck is one [[health_checks]] table: what must hold on the hosts
// its selector matches after a switch or test, before a rollback guard is
// disarmed. A host matched by several tables gets all their checks.
type HealthCheck struct {
	// Hosts is a selector list, as a schedule's: names, @tags and globs.
	Hosts []string `toml:"hosts"`
	// Units must be active: `systemctl is-active UNIT` exits 0.
	Units []string `toml:"units"`
	// Commands run on the target with sh -c and must exit 0, for example
	// "curl -fsS localhost:9100/metrics".
	Commands []string `toml:"commands"`
	// Settle is waited after the activation before the checks run, so
	// services that restart have time to come up.
	Settle Duration `toml:"settle"`
	// Timeout bounds each check of this table (default 30s).
	Timeout Duration `toml:"timeout"`
}

// Guard configures the rollback guard ([guard]).
type Guard struct {
	// Window is how long after the guard is armed (right before the
	// activation) the target waits for the bot to disarm it before it
	// re-activates the previous system by itself (default 5m). It must
	// cover the activation, the settle time and the checks.
	Window Duration `toml:"window"`
}

// Defaults of the health checks and the guard.
const (
	DefaultCheckTimeout = 30 * time.Second
	DefaultGuardWindow  = 5 * time.Minute
	// maxSettle and maxCheckTimeout keep a typo ("30m" for "30s") from
	// holding a nightly run for an hour.
	maxSettle       = 10 * time.Minute
	maxCheckTimeout = 10 * time.Minute
	minGuardWindow  = time.Second
	maxGuardWindow  = time.Hour
)

// Check is one health check of a host, as the deployer runs it.
type Check struct {
	// Unit is set for a unit check, Command for a command check.
	Unit    string
	Command string
	Timeout time.Duration
}

// Name is how the log and the error name the check.
func (c Check) Name() string {
	if c.Unit != "" {
		return "unit " + c.Unit
	}
	return "command `" + c.Command + "`"
}

// HostChecks are the health checks that apply to one host.
type HostChecks struct {
	Settle time.Duration
	Checks []Check
}

// ChecksFor gathers the checks of every [[health_checks]] table whose
// selector matches host, in config order, without repeating a check.
func (c *Config) ChecksFor(host string) HostChecks {
	var out HostChecks
	seen := map[string]bool{}
	for _, hc := range c.HealthChecks {
		hosts, err := c.Select(hc.Hosts)
		if err != nil || !slices.ContainsFunc(hosts, func(h Host) bool { return h.Name == host }) {
			continue
		}
		out.Settle = max(out.Settle, hc.Settle.Duration)
		add := func(ch Check) {
			if !seen[ch.Name()] {
				seen[ch.Name()] = true
				out.Checks = append(out.Checks, ch)
			}
		}
		for _, u := range hc.Units {
			add(Check{Unit: u, Timeout: hc.Timeout.Duration})
		}
		for _, cmd := range hc.Commands {
			add(Check{Command: cmd, Timeout: hc.Timeout.Duration})
		}
	}
	return out
}

func (c *Config) applyHealthDefaults() {
	for i := range c.HealthChecks {
		if c.HealthChecks[i].Timeout.Duration == 0 {
			c.HealthChecks[i].Timeout.Duration = DefaultCheckTimeout
		}
	}
	if c.Guard.Window.Duration == 0 {
		c.Guard.Window.Duration = DefaultGuardWindow
	}
}

// unitRE is a systemd unit name (systemd.unit(5), "valid unit names"):
// letters, digits, ":", "-", "_", ".", "\" and "@", with a type suffix.
var unitRE = regexp.MustCompile(`^[A-Za-z0-9:_.\\@-]+\.(service|socket|target|device|mount|automount|swap|path|timer|slice|scope)$`)

func (c *Config) validateHealth(p *problems) {
	for i, hc := range c.HealthChecks {
		where := fmt.Sprintf("health_checks[%d]", i)
		if len(hc.Hosts) == 0 {
			p.add("%s: hosts is empty (name hosts, @tags or globs the checks apply to)", where)
		} else if _, err := c.Select(hc.Hosts); err != nil {
			p.add("%s: hosts selector matches nothing: %v", where, err)
		}
		if len(hc.Units) == 0 && len(hc.Commands) == 0 {
			p.add("%s: units and commands are both empty; give at least one check", where)
		}
		for _, u := range hc.Units {
			if !unitRE.MatchString(u) || strings.HasPrefix(u, "-") {
				p.add("%s: units: %q is not a systemd unit name with its type (for example sshd.service)", where, u)
			}
		}
		for _, cmd := range hc.Commands {
			switch {
			case strings.TrimSpace(cmd) == "":
				p.add("%s: commands: an empty command", where)
			case strings.ContainsAny(cmd, "\n\r\x00"):
				p.add("%s: commands: %q spans several lines; write one command a string", where, cmd)
			}
		}
		if s := hc.Settle.Duration; s < 0 || s > maxSettle {
			p.add("%s: settle %s must be between 0s and %s", where, s, maxSettle)
		}
		if t := hc.Timeout.Duration; t <= 0 || t > maxCheckTimeout {
			p.add("%s: timeout %s must be more than 0s and at most %s", where, t, maxCheckTimeout)
		}
	}
	if w := c.Guard.Window.Duration; w < minGuardWindow || w > maxGuardWindow {
		p.add("guard.window: %s must be between %s and %s", w, minGuardWindow, maxGuardWindow)
	}
}
