package nixdeploy

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	toml "github.com/pelletier/go-toml/v2"
)

// Systems nixdeploy can deploy to.
const (
	SystemX86_64  = "x86_64-linux"
	SystemAarch64 = "aarch64-linux"
)

// Defaults applied by LoadConfig when a key is absent.
const (
	DefaultSSHPort         = 22
	DefaultApprovalTTL     = 15 * time.Minute
	DefaultApproveReaction = "white_check_mark"
	DefaultRejectReaction  = "x"
	DefaultUser            = "michael"
	DefaultKeysDir         = "keys"
	DefaultTimeZone        = "UTC"
)

// Config is the decoded nixdeploy.toml. Relative paths in it are resolved
// against the directory of the file, so a config works from any cwd.
type Config struct {
	// Flake is the flake URI of the full configuration, as the runner sees it
	// (for example "/home/michael/dots" or "github:owner/dots").
	Flake string `toml:"flake"`
	// InstallerFlake is the flake URI of the minimal installer flake.
	InstallerFlake string `toml:"installer_flake"`

	Hosts     []Host     `toml:"hosts"`
	Runner    Runner     `toml:"runner"`
	Keys      Keys       `toml:"keys"`
	Secrets   Secrets    `toml:"secrets"`
	Slack     Slack      `toml:"slack"`
	Schedules []Schedule `toml:"schedules"`
	// BMCs are the Turing Pi boards whose BMC powers, watches and flashes
	// their nodes (bmc.go).
	BMCs []BMC `toml:"bmcs"`
	// Board tunes the drift board's reading of hosts (board.go).
	Board BoardConfig `toml:"board"`
	// HealthChecks say what must hold on hosts after a switch or test
	// (health.go); Guard configures the rollback guard.
	HealthChecks []HealthCheck `toml:"health_checks"`
	Guard        Guard         `toml:"guard"`
	// Timeouts bound waits that are not one step's.
	Timeouts Timeouts `toml:"timeouts"`

	// Path is the file the config was loaded from; Dir its directory.
	Path string `toml:"-"`
	Dir  string `toml:"-"`
}

// Host is one machine of the fleet.
type Host struct {
	Name    string   `toml:"name"`
	Address string   `toml:"address"`
	Port    int      `toml:"port"`
	System  string   `toml:"system"`
	Tags    []string `toml:"tags"`
	// Disk is the device disko formats on install, e.g. /dev/nvme0n1.
	Disk string `toml:"disk"`
	// FlakeAttr names the host in Config.Flake's nixosConfigurations;
	// it defaults to Name.
	FlakeAttr string `toml:"flake_attr"`
	// InstallerAttr names the host in Config.InstallerFlake; defaults to Name.
	InstallerAttr string `toml:"installer_attr"`
	// BuildOnTarget makes nixos-rebuild build on the host itself
	// (--build-host), so an x86_64 runner needs no aarch64 emulation.
	BuildOnTarget bool `toml:"build_on_target"`

	// DiskKey is the path on the install target where the disk layout's
	// LUKS passwordFile is read (disko's luks type pipes it to
	// cryptsetup luksFormat), for example /tmp/secret.key. Set for every
	// host whose layout uses LUKS: the key store then holds
	// <host>_disk_key, and the install passes it with
	// --disk-encryption-keys. Empty: the layout has no LUKS.
	DiskKey string `toml:"disk_key"`
	// InitrdSSH is the SSH server in the host's initrd that unlocks LUKS
	// remotely after a reboot; nil when the host has none.
	InitrdSSH *InitrdSSH `toml:"initrd_ssh"`

	// Phases limits nixos-anywhere to some of kexec, disko, install,
	// reboot (--phases); empty means all four.
	Phases []string `toml:"phases"`
	// Kexec is the kexec tarball (URL or path on the runner) passed with
	// --kexec; empty uses nixos-anywhere's default image.
	Kexec string `toml:"kexec"`
	// KexecExtraFlags is passed with --kexec-extra-flags, for example
	// "--dtb=/boot/dtbs/rockchip/rk3588-turing-rk1.dtb".
	KexecExtraFlags string `toml:"kexec_extra_flags"`

	// BMC names the [[bmcs]] board the host sits on, and BMCNode its
	// slot (1-4); empty when no BMC manages the host.
	BMC     string `toml:"bmc"`
	BMCNode int    `toml:"bmc_node"`
}

// InitrdSSH is a host's initrd SSH server (boot.initrd.network.ssh).
type InitrdSSH struct {
	// Port is the port the initrd's sshd listens on; it differs from the
	// host's own SSH port so the two pinned keys never share a
	// known_hosts entry.
	Port int `toml:"port"`
	// HostKeyPath is where the pre-generated initrd host key lands on the
	// target (through --extra-files), as the host's nix config names it
	// in boot.initrd.network.ssh.hostKeys.
	HostKeyPath string `toml:"host_key_path"`
}

// DefaultInitrdHostKeyPath is InitrdSSH.HostKeyPath when the config leaves
// it out; nix/ uses the same path.
const DefaultInitrdHostKeyPath = "/etc/secrets/initrd/ssh_host_ed25519_key"

// DefaultInitrdSSHPort is InitrdSSH.Port when the config leaves it out.
const DefaultInitrdSSHPort = 2222

// InstallPhases are nixos-anywhere's phases, in the order it runs them
// (src/nixos-anywhere.sh, --phases).
var InstallPhases = []string{"kexec", "disko", "install", "reboot"}

// LUKS reports whether the host's disk layout needs a disk key.
func (h Host) LUKS() bool { return h.DiskKey != "" }

// Runner is the machine with Nix that runs nixos-anywhere and nixos-rebuild.
type Runner struct {
	// Address is "local" or "user@host[:port]".
	Address string `toml:"address"`
	// HostKey pins the runner's host key as an authorized_keys line.
	HostKey string `toml:"host_key"`
	// KnownHosts is a known_hosts file used when HostKey is empty.
	KnownHosts string `toml:"known_hosts"`
	// Jump is an optional ProxyJump host in front of the runner and targets.
	Jump *Jump `toml:"jump"`
}

// Jump is a ProxyJump host.
type Jump struct {
	Address    string `toml:"address"`
	HostKey    string `toml:"host_key"`
	KnownHosts string `toml:"known_hosts"`
}

// Keys configures the pre-generated key store.
type Keys struct {
	// Dir holds <host>_ssh_host_ed25519_key(.pub|.age) and the per-host
	// user age identities.
	Dir string `toml:"dir"`
	// AgeIdentityFile is the bot's age identity for keys stored as .age.
	// NIXDEPLOY_AGE_IDENTITY overrides it.
	AgeIdentityFile string `toml:"age_identity_file"`
}

// Secrets configures the sops side of the key workflow.
type Secrets struct {
	// User is the login whose age key each host receives.
	User string `toml:"user"`
	// SopsConfig is the path of .sops.yaml in the secrets repo.
	SopsConfig string `toml:"sops_config"`
	// File is the sops-encrypted secrets.yaml.
	File string `toml:"file"`
	// PathRegex is the creation rule's path_regex; defaults to the
	// secrets file's base name.
	PathRegex string `toml:"path_regex"`
	// AdminRecipients are the operators' own age recipients.
	AdminRecipients []string `toml:"admin_recipients"`
	// RedactEnv lists environment variable names whose values are secret
	// and must be redacted wherever they appear in output.
	RedactEnv []string `toml:"redact_env"`
}

// Slack is the chat policy.
type Slack struct {
	Channel   string   `toml:"channel"`
	Deployers []string `toml:"deployers"`
	Approvers []string `toml:"approvers"`
	OnCall    []string `toml:"oncall"`
	// Destructive enables install requests from chat.
	Destructive     bool     `toml:"destructive"`
	ApprovalTTL     Duration `toml:"approval_ttl"`
	ApproveReaction string   `toml:"approve_reaction"`
	RejectReaction  string   `toml:"reject_reaction"`
	// MultiHostInstall is how an install of several hosts is approved:
	// MultiInstallPerHost (the default) or MultiInstallTwoApprovers.
	MultiHostInstall string `toml:"multi_host_install"`
}

// Policies for an install request that names several hosts, such as
// "install @rk1": no single reaction wipes several disks by default.
const (
	// MultiInstallPerHost splits the request into one deployment per host,
	// each with its own approval message naming its one disk.
	MultiInstallPerHost = "per_host"
	// MultiInstallTwoApprovers keeps one deployment whose approval message
	// lists every host and disk, and needs two approvers, neither of them
	// the requester.
	MultiInstallTwoApprovers = "two_approvers"
)

// Schedule is a cron-driven request.
type Schedule struct {
	Name     string `toml:"name"`
	Cron     string `toml:"cron"`
	TimeZone string `toml:"timezone"`
	// Hosts is a selector list: names, @tags and globs.
	Hosts    []string `toml:"hosts"`
	Action   Action   `toml:"action"`
	Strategy Strategy `toml:"strategy"`
	// Parallel bounds the parallel strategy.
	Parallel int `toml:"parallel"`
	// BusyWait bounds how long a locked host is waited for.
	BusyWait Duration `toml:"busy_wait"`
	// Missed is "skip" (default) or "catch-up".
	Missed string `toml:"missed"`
	// CatchUpWindow bounds how late a catch-up run may start.
	CatchUpWindow Duration `toml:"catch_up_window"`
	// Recover is what to do about a host that cannot be reached after
	// activation: "none" (default) or "power-reset" (through its BMC).
	Recover Recover `toml:"recover"`
	// Always makes a report schedule (action = "report") post the board
	// on every run, not only when it changed since the last one it posted.
	Always bool `toml:"always"`
	// Canary is the host the canary strategy deploys first (default: the
	// first host of the selection).
	Canary string `toml:"canary"`
}

// ScheduleReport is the schedule action that deploys nothing: it reads
// the drift board of the schedule's hosts and posts it (see
// Schedule.Always). It is no Action of chat requests or the CLI.
const ScheduleReport Action = "report"

// Timeouts bound waits that are not one step's.
type Timeouts struct {
	// Outage bounds how long the runner may stay unreachable while a
	// long step runs on it under its supervisor: the bot reconnects and
	// follows on within it, and after it fails the deployment, saying the
	// step may still be running (default DefaultOutage).
	Outage Duration `toml:"outage"`
}

// DefaultOutage is [timeouts] outage when the config does not set it.
const DefaultOutage = 10 * time.Minute

// Duration is a time.Duration written as a Go duration string ("15m").
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("bad duration %q (write it like 15m or 90s)", b)
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// FlakeRef is the full-configuration reference for nixos-rebuild.
func (c *Config) FlakeRef(h Host) string { return c.Flake + "#" + h.FlakeAttr }

// InstallerRef is the installer reference for nixos-anywhere.
func (c *Config) InstallerRef(h Host) string { return c.InstallerFlake + "#" + h.InstallerAttr }

// Host returns the host named name.
func (c *Config) Host(name string) (Host, bool) {
	for _, h := range c.Hosts {
		if h.Name == name {
			return h, true
		}
	}
	return Host{}, false
}

// HasTag reports whether h carries tag t.
func (h Host) HasTag(t string) bool {
	return slices.Contains(h.Tags, t)
}

// SSHAddr is host:port for dialing.
func (h Host) SSHAddr() string { return joinHostPort(h.Address, h.Port) }

func joinHostPort(host string, port int) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

// IsLocal reports whether the runner is the bot's own machine.
func (r Runner) IsLocal() bool { return r.Address == "" || r.Address == "local" }

// ConfigError is a config that failed to decode or validate. Problems holds
// one human-readable line per problem, all of them, not just the first.
type ConfigError struct {
	Path     string
	Problems []string
}

func (e *ConfigError) Error() string {
	if len(e.Problems) == 1 {
		return e.Path + ": " + e.Problems[0]
	}
	return fmt.Sprintf("%s: %d problems:\n  %s", e.Path, len(e.Problems), strings.Join(e.Problems, "\n  "))
}

// LoadConfig reads, strictly decodes, defaults and validates a config file.
// Any problem yields a *ConfigError listing every problem found.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := ParseConfig(path, data)
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

// ParseConfig decodes data as if read from path.
func ParseConfig(path string, data []byte) (*Config, error) {
	var cfg Config
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return nil, &ConfigError{Path: path, Problems: decodeProblems(err)}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("resolve config path: %w", err)
	}
	cfg.Path = abs
	cfg.Dir = filepath.Dir(abs)
	cfg.applyDefaults()
	if probs := cfg.Validate(); len(probs) > 0 {
		return nil, &ConfigError{Path: path, Problems: locateProblems(data, probs)}
	}
	return &cfg, nil
}

func decodeProblems(err error) []string {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		out := make([]string, 0, len(strict.Errors))
		for _, e := range strict.Errors {
			row, col := e.Position()
			out = append(out, fmt.Sprintf("line %d, column %d: unknown key %q", row, col, strings.Join(e.Key(), ".")))
		}
		return out
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, col := de.Position()
		return []string{fmt.Sprintf("line %d, column %d: %s", row, col, strings.TrimPrefix(de.Error(), "toml: "))}
	}
	return []string{err.Error()}
}

func (c *Config) applyDefaults() {
	for i := range c.Hosts {
		h := &c.Hosts[i]
		if h.Port == 0 {
			h.Port = DefaultSSHPort
		}
		if h.FlakeAttr == "" {
			h.FlakeAttr = h.Name
		}
		if h.InstallerAttr == "" {
			h.InstallerAttr = h.Name
		}
		if i := h.InitrdSSH; i != nil {
			if i.Port == 0 {
				i.Port = DefaultInitrdSSHPort
			}
			if i.HostKeyPath == "" {
				i.HostKeyPath = DefaultInitrdHostKeyPath
			}
		}
	}
	if c.Runner.Address == "" {
		c.Runner.Address = "local"
	}
	if c.Keys.Dir == "" {
		c.Keys.Dir = DefaultKeysDir
	}
	c.Keys.Dir = c.resolve(c.Keys.Dir)
	c.Keys.AgeIdentityFile = c.resolve(c.Keys.AgeIdentityFile)
	c.Runner.KnownHosts = c.resolve(c.Runner.KnownHosts)
	if c.Runner.Jump != nil {
		c.Runner.Jump.KnownHosts = c.resolve(c.Runner.Jump.KnownHosts)
	}
	if c.Secrets.User == "" {
		c.Secrets.User = DefaultUser
	}
	c.Secrets.SopsConfig = c.resolve(c.Secrets.SopsConfig)
	c.Secrets.File = c.resolve(c.Secrets.File)
	if c.Secrets.PathRegex == "" && c.Secrets.File != "" {
		c.Secrets.PathRegex = regexp.QuoteMeta(filepath.Base(c.Secrets.File)) + "$"
	}
	if c.Slack.ApprovalTTL.Duration == 0 {
		c.Slack.ApprovalTTL.Duration = DefaultApprovalTTL
	}
	if c.Slack.ApproveReaction == "" {
		c.Slack.ApproveReaction = DefaultApproveReaction
	}
	if c.Slack.RejectReaction == "" {
		c.Slack.RejectReaction = DefaultRejectReaction
	}
	if c.Slack.MultiHostInstall == "" {
		c.Slack.MultiHostInstall = MultiInstallPerHost
	}
	c.Board.applyDefaults()
	c.applyHealthDefaults()
	if c.Timeouts.Outage.Duration == 0 {
		c.Timeouts.Outage.Duration = DefaultOutage
	}
	for i := range c.Schedules {
		s := &c.Schedules[i]
		if s.TimeZone == "" {
			s.TimeZone = DefaultTimeZone
		}
		if s.Strategy == "" {
			s.Strategy = DefaultStrategy
		}
		if s.Action == "" {
			s.Action = ActionSwitch
		}
		if s.Missed == "" {
			s.Missed = "skip"
		}
		if s.Parallel == 0 {
			s.Parallel = 2
		}
		if s.BusyWait.Duration == 0 {
			s.BusyWait.Duration = 10 * time.Minute
		}
		if s.CatchUpWindow.Duration == 0 {
			s.CatchUpWindow.Duration = 2 * time.Hour
		}
	}
}

func (c *Config) resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.Dir, p)
}
