package nixdeploy

import (
	"fmt"
	"net"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// ValidName reports whether s is a valid host, tag or schedule name.
func ValidName(s string) bool { return len(s) <= 63 && nameRE.MatchString(s) }

// ReservedNames are the words of /nixdeploy. A host with one of these names
// would make "/nixdeploy status" ambiguous, so the config refuses them;
// commands/ tests that its table and this list agree.
var ReservedNames = []string{
	"switch", "boot", "test", "dry-run", "dry-activate", "rollback", "install",
	"status", "history", "cancel", "lock", "unlock", "unlock-disk", "schedules", "schedule", "keys", "help",
	"power", "uart", "flash",
}

var digitsRE = regexp.MustCompile(`^[0-9]+$`)

// Strategy is how a schedule runs its hosts.
type Strategy string

// The strategies; schedules/ has one function for each (its table
// "strategies", checked against Strategies by a test).
const (
	// StrategyRolling runs the hosts one at a time and halts at the
	// first failure.
	StrategyRolling Strategy = "rolling"
	// StrategyCanary deploys one host first (Schedule.Canary), guarded and
	// checked, and touches the others only when it passed; they then roll
	// as with StrategyRolling.
	StrategyCanary Strategy = "canary"
	// StrategyParallel runs up to Parallel hosts at once and starts no
	// further host after a failure.
	StrategyParallel Strategy = "parallel"

	DefaultStrategy = StrategyRolling
)

// Strategies a schedule may use.
var Strategies = []Strategy{StrategyRolling, StrategyParallel, StrategyCanary}

// Validate returns one line per problem in c, or nil. It is run by
// LoadConfig after defaults are applied.
func (c *Config) Validate() []string {
	var p problems
	if len(c.Hosts) == 0 {
		p.add("no hosts: add at least one [[hosts]] table")
	}
	if c.Flake == "" {
		p.add("flake: missing (the flake URI of the full configuration, as the runner sees it)")
	}
	if c.InstallerFlake == "" {
		p.add("installer_flake: missing (the flake URI of the installer flake)")
	}
	names := map[string]int{}
	addrs := map[string]string{}
	for i, h := range c.Hosts {
		where := fmt.Sprintf("hosts[%d]", i)
		if h.Name != "" {
			where = fmt.Sprintf("host %q", h.Name)
		}
		switch {
		case h.Name == "":
			p.add("%s: name is missing", where)
		case !ValidName(h.Name):
			p.add("%s: name must match [a-z0-9-] (lower-case letters, digits and dashes)", where)
		case slices.Contains(ReservedNames, h.Name):
			p.add("%s: name is a /nixdeploy command word; choose another", where)
		case digitsRE.MatchString(h.Name):
			p.add("%s: name must not be all digits (it would read as a count or id)", where)
		}
		if j, dup := names[h.Name]; dup && h.Name != "" {
			p.add("%s: duplicate host name (also hosts[%d])", where, j)
		} else {
			names[h.Name] = i
		}
		if h.Address == "" {
			p.add("%s: address is missing", where)
		} else if !validAddress(h.Address) {
			p.add("%s: address %q is not an IP address or host name", where, h.Address)
		} else if other, dup := addrs[h.SSHAddr()]; dup {
			// Address and port together: hosts behind one NAT address
			// are told apart by their forwarded ports.
			p.add("%s: duplicate address %s (also host %q)", where, h.Address, other)
		} else {
			addrs[h.SSHAddr()] = h.Name
		}
		if h.Port < 1 || h.Port > 65535 {
			p.add("%s: port %d is out of range 1-65535", where, h.Port)
		}
		if h.System != SystemX86_64 && h.System != SystemAarch64 {
			p.add("%s: system %q must be %s or %s", where, h.System, SystemX86_64, SystemAarch64)
		}
		if h.Disk == "" {
			p.add("%s: disk is missing (the device disko formats on install)", where)
		} else if !strings.HasPrefix(h.Disk, "/dev/") {
			p.add("%s: disk %q must be a device path under /dev/", where, h.Disk)
		}
		validateInstallOptions(&p, where, h)
		for _, t := range h.Tags {
			if !ValidName(t) {
				p.add("%s: tag %q must match [a-z0-9-]", where, t)
			}
		}
		for _, attr := range []string{h.FlakeAttr, h.InstallerAttr} {
			if !validAttr(attr) {
				p.add("%s: flake attribute %q may hold only letters, digits, '-', '_' and '.'", where, attr)
			}
		}
	}
	c.validateRunner(&p)
	c.Board.validate(&p)
	c.validateSecrets(&p)
	c.validateSlack(&p)
	c.validateSchedules(&p)
	c.validateBMCs(&p)
	c.validateHealth(&p)
	return p
}

func (c *Config) validateRunner(p *problems) {
	r := c.Runner
	if !r.IsLocal() {
		if _, _, err := ParseSSHAddress(r.Address); err != nil {
			p.add("runner: %v", err)
		}
		if r.HostKey == "" && r.KnownHosts == "" {
			p.add("runner: set host_key or known_hosts to pin the runner's host key")
		}
	}
	if j := r.Jump; j != nil {
		if _, _, err := ParseSSHAddress(j.Address); err != nil {
			p.add("runner.jump: %v", err)
		}
		if j.HostKey == "" && j.KnownHosts == "" {
			p.add("runner.jump: set host_key or known_hosts to pin the jump host's key")
		}
	}
}

func (c *Config) validateSecrets(p *problems) {
	if !ValidName(c.Secrets.User) {
		p.add("secrets.user: %q is not a valid user name", c.Secrets.User)
	}
	for _, r := range c.Secrets.AdminRecipients {
		if !strings.HasPrefix(r, "age1") {
			p.add("secrets.admin_recipients: %q is not an age recipient (age1...)", r)
		}
	}
	if c.Secrets.PathRegex != "" {
		if _, err := regexp.Compile(c.Secrets.PathRegex); err != nil {
			p.add("secrets.path_regex: %v", err)
		}
	}
}

func (c *Config) validateSlack(p *problems) {
	s := c.Slack
	if s.Destructive && len(s.Approvers) == 0 {
		p.add("slack: destructive actions are enabled but approvers is empty")
	}
	if s.ApprovalTTL.Duration < 0 {
		p.add("slack.approval_ttl: must be positive")
	}
	if c.Timeouts.Outage.Duration < 0 {
		p.add("timeouts.outage: must be positive")
	}
	switch s.MultiHostInstall {
	case MultiInstallPerHost:
	case MultiInstallTwoApprovers:
		if s.Destructive && len(s.Approvers) < 2 {
			p.add("slack.multi_host_install = %q needs at least two approvers", s.MultiHostInstall)
		}
	default:
		p.add("slack.multi_host_install %q must be %s or %s", s.MultiHostInstall, MultiInstallPerHost, MultiInstallTwoApprovers)
	}
	if s.ApproveReaction == s.RejectReaction {
		p.add("slack: approve_reaction and reject_reaction are both %q", s.ApproveReaction)
	}
	for _, r := range []string{s.ApproveReaction, s.RejectReaction} {
		if strings.ContainsAny(r, ": ") {
			p.add("slack: reaction %q must be a name without colons or spaces", r)
		}
	}
}

func (c *Config) validateSchedules(p *problems) {
	seen := map[string]bool{}
	for i, s := range c.Schedules {
		where := fmt.Sprintf("schedules[%d]", i)
		if s.Name != "" {
			where = fmt.Sprintf("schedule %q", s.Name)
		}
		if !ValidName(s.Name) {
			p.add("%s: name must match [a-z0-9-]", where)
		}
		if seen[s.Name] {
			p.add("%s: duplicate schedule name", where)
		}
		seen[s.Name] = true
		if _, err := cron.ParseStandard(s.Cron); err != nil {
			p.add("%s: bad cron spec %q: %v", where, s.Cron, err)
		}
		if _, err := time.LoadLocation(s.TimeZone); err != nil {
			p.add("%s: unknown time zone %q", where, s.TimeZone)
		}
		if len(s.Hosts) == 0 {
			p.add("%s: hosts is empty", where)
		} else if _, err := c.Select(s.Hosts); err != nil {
			p.add("%s: selector matches nothing: %v", where, err)
		}
		if s.Always && s.Action != ScheduleReport {
			p.add("%s: always applies only to action \"report\"", where)
		}
		if s.Action == ScheduleReport {
			// Reads and posts the board; deploys nothing.
		} else if _, err := ParseAction(string(s.Action)); err != nil {
			p.add("%s: %v (or \"report\", which posts the drift board)", where, err)
		} else if s.Action.Destructive() {
			p.add("%s: action %q is destructive and cannot be scheduled", where, s.Action)
		}
		if !slices.Contains(Strategies, s.Strategy) {
			p.add("%s: strategy %q must be rolling, parallel or canary", where, s.Strategy)
		}
		if s.Canary != "" {
			if s.Strategy != StrategyCanary {
				p.add("%s: canary is set but strategy is %q; set strategy = \"canary\" or remove canary", where, s.Strategy)
			} else if hosts, err := c.Select(s.Hosts); err == nil && !slices.ContainsFunc(hosts, func(h Host) bool { return h.Name == s.Canary }) {
				p.add("%s: canary %q is not one of the schedule's hosts", where, s.Canary)
			}
		}
		if s.Parallel < 1 {
			p.add("%s: parallel must be at least 1", where)
		}
		if s.Missed != "skip" && s.Missed != "catch-up" {
			p.add("%s: missed %q must be skip or catch-up", where, s.Missed)
		}
		c.validateRecover(p, where, s)
	}
}

// ParseSSHAddress splits "user@host[:port]" into user and host:port.
func ParseSSHAddress(s string) (user, hostport string, err error) {
	user, rest, ok := strings.Cut(s, "@")
	if !ok || user == "" || rest == "" {
		return "", "", fmt.Errorf("address %q must look like user@host or user@host:port", s)
	}
	host, port := rest, "22"
	if h, pt, err := net.SplitHostPort(rest); err == nil {
		host, port = h, pt
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", "", fmt.Errorf("address %q has a bad port", s)
	}
	if !validAddress(host) {
		return "", "", fmt.Errorf("address %q has a bad host", s)
	}
	return user, joinHostPort(host, n), nil
}

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$`)

func validAddress(s string) bool {
	return net.ParseIP(s) != nil || (len(s) <= 253 && hostnameRE.MatchString(s))
}

var attrRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

func validAttr(s string) bool { return attrRE.MatchString(s) }

type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// validateInstallOptions checks the per-host nixos-anywhere options and the
// LUKS unlock settings.
func validateInstallOptions(p *problems, where string, h Host) {
	if h.DiskKey != "" && !validRemotePath(h.DiskKey) {
		p.add("%s: disk_key %q must be an absolute path on the target such as /tmp/secret.key", where, h.DiskKey)
	}
	if i := h.InitrdSSH; i != nil {
		if h.DiskKey == "" {
			p.add("%s: initrd_ssh unlocks LUKS, but the host has no disk_key", where)
		}
		if i.Port < 1 || i.Port > 65535 {
			p.add("%s: initrd_ssh.port %d is out of range 1-65535", where, i.Port)
		} else if i.Port == h.Port {
			p.add("%s: initrd_ssh.port %d is the host's own SSH port; the initrd needs a port of its own", where, i.Port)
		}
		if !validRemotePath(i.HostKeyPath) {
			p.add("%s: initrd_ssh.host_key_path %q must be an absolute path", where, i.HostKeyPath)
		} else if i.HostKeyPath == "/etc/ssh/ssh_host_ed25519_key" {
			p.add("%s: initrd_ssh.host_key_path must differ from the main host key: the initrd key is stored unencrypted in the boot partition", where)
		}
	}
	seen := map[string]bool{}
	for _, ph := range h.Phases {
		switch {
		case !slices.Contains(InstallPhases, ph):
			p.add("%s: phases: unknown phase %q (nixos-anywhere knows %s)", where, ph, strings.Join(InstallPhases, ", "))
		case seen[ph]:
			p.add("%s: phases: %q is listed twice", where, ph)
		}
		seen[ph] = true
	}
	if len(h.Phases) > 0 && !seen["kexec"] && (h.Kexec != "" || h.KexecExtraFlags != "") {
		p.add("%s: kexec and kexec_extra_flags need the kexec phase, which phases leaves out", where)
	}
	if strings.ContainsAny(h.Kexec, " \t\n") {
		p.add("%s: kexec %q must be one URL or path, without spaces", where, h.Kexec)
	} else if h.Kexec != "" && !validKexec(h.Kexec) {
		p.add("%s: kexec %q must be an http(s) URL or an absolute path on the runner ending in .tar.gz, .tar.xz, .tar.zst or .tar (nixos-anywhere picks the decompressor by that suffix)", where, h.Kexec)
	}
	if strings.ContainsAny(h.KexecExtraFlags, "\n\r") {
		p.add("%s: kexec_extra_flags must be one line", where)
	}
}

// validKexec is a kexec tarball as nixos-anywhere's runKexec takes it: a
// local file it uploads, or a URL the target (or the runner) downloads,
// unpacked with tar and a decompressor chosen by the suffix
// (src/nixos-anywhere.sh, runKexec).
func validKexec(s string) bool {
	if !strings.HasPrefix(s, "https://") && !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "/") {
		return false
	}
	for _, suf := range []string{".tar.gz", ".tar.xz", ".tar.zst", ".tar"} {
		if strings.HasSuffix(s, suf) {
			return true
		}
	}
	return false
}

// validRemotePath is an absolute, clean path on a remote machine.
func validRemotePath(s string) bool {
	return strings.HasPrefix(s, "/") && path.Clean(s) == s && !strings.ContainsAny(s, " \t\n'\"$`\\")
}
