package deployer

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// Where a step runs.
type Where string

// Places a step can run.
const (
	// WhereBot is the bot itself: key checks, opening connections, waiting.
	WhereBot Where = "bot"
	// WhereRunner is the machine with Nix (over SSH, or local).
	WhereRunner Where = "runner"
	// WhereTarget is the fleet host, over SSH as root.
	WhereTarget Where = "target"
)

// Kind says how a step is carried out.
type Kind string

// Step kinds. Only KindCommand, KindTempDir, KindLock and KindDisks run
// Argv as given; the others are the deployer's own procedures, whose
// commands are fixed.
const (
	KindCommand   Kind = "command"
	KindPreflight Kind = "preflight"
	KindConnect   Kind = "connect"
	KindTempDir   Kind = "tempdir"
	KindWaitSSH   Kind = "wait-ssh"
	KindProbe     Kind = "probe"
	KindVerify    Kind = "verify"
	// KindLock asks the runner for a flake's locked revision (nix flake
	// metadata --json); its argv names which flake.
	KindLock Kind = "lock"
	// KindDisks evaluates the installer configuration's disko disk
	// devices and refuses a device other than the config's disk.
	KindDisks Kind = "disks"
)

// Input is what a command step gets on stdin. Key material is named, not
// held, so a plan can be printed, compared and stored without secrets; the
// bytes are read from the key store when the step runs.
type Input string

// Step inputs.
const (
	InputNone    Input = ""
	InputHostKey Input = "host-private-key"
	InputHostPub Input = "host-public-key"
	// InputKnownHosts is the known_hosts line built from the host's pinned
	// .pub ("addr key" or "[addr]:port key").
	InputKnownHosts Input = "known-hosts"
	// InputDiskKey is the host's LUKS passphrase from the key store.
	InputDiskKey Input = "disk-key"
	// InputInitrdKey is the host's initrd SSH host key from the key store.
	InputInitrdKey Input = "initrd-private-key"
)

// Placeholders in argv elements, filled in when the step runs. They are
// what `nixdeploy plan` prints where the value is not known beforehand.
const (
	// TempDir is the directory the plan's KindTempDir step created on the
	// runner (mktemp -d).
	TempDir = "<tmp>"
	// LockedFlake is Config.Flake at the revision its KindLock step (or
	// the approval) resolved.
	LockedFlake = "<flake>"
	// LockedInstaller is Config.InstallerFlake at its locked revision.
	LockedInstaller = "<installer>"
)

// Files of the run directory on the runner. Key material sits in it only
// between its upload and the remove-keys step; disk.key is outside
// extra-files so nixos-anywhere never copies it into /mnt.
const (
	knownHostsFile = "known_hosts"
	extraFilesDir  = "extra-files"
	diskKeyFile    = "disk.key"
	agentSocket    = "agent.sock"
	hostKeyRel     = "etc/ssh/ssh_host_ed25519_key"
)

// nixFlags lets the runner's nix run the flake commands whether or not its
// nix.conf enables them; nixos-anywhere passes the same flags to its own
// nix calls (src/nixos-anywhere.sh).
var nixFlags = []string{"--extra-experimental-features", "nix-command flakes"}

// Step is one named step of a plan.
type Step struct {
	Name  string
	Kind  Kind
	Where Where
	Argv  []string
	Stdin Input
	// Agent: the command reaches the targets with its own ssh, so it gets
	// the bot's key through the SSH agent (forwarded to a remote runner,
	// an in-process agent on <tmp>/agent.sock for a local one).
	Agent bool
	// BuildOnRemoteIfForeign: nixos-anywhere gets --build-on remote when
	// the runner's system, probed once, differs from the host's.
	BuildOnRemoteIfForeign bool
	// Timeout bounds the step; a step that runs over is stopped.
	Timeout time.Duration
	// Cleanup steps run whatever happened before them, cancel included,
	// under a context of their own.
	Cleanup bool
	// Wipes marks the step that formats the target's disk: an approved
	// deployment runs it only with the approved plan (see approvedPlan).
	Wipes bool
}

// Expect is what verification requires of /run/current-system.
type Expect string

// Expectations.
const (
	// ExpectChange: the system must change (rollback).
	ExpectChange Expect = "change"
	// ExpectChangeOrWarn: a change is expected; none is reported as a
	// warning, since rebuilding an unchanged flake yields the same system.
	ExpectChangeOrWarn Expect = "change-or-warn"
	// ExpectSame: the running system must not change (boot, dry-activate).
	ExpectSame Expect = "same"
)

// Plan is what a deployment does to one host.
type Plan struct {
	Host   nixdeploy.Host
	Action nixdeploy.Action
	Steps  []Step
	Expect Expect
	// Locked holds the revisions resolved before the run (by an approval);
	// when set the plan's lock steps are skipped and these are used, so
	// what was approved is what runs.
	Locked *nixdeploy.Lock
	// Notes say what the argv cannot: what nixos-anywhere cannot pin, what
	// happens at boot.
	Notes []string
}

// String lists the steps, one a line, with their commands quoted as the
// remote shell receives them.
func (p *Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s:\n", p.Action, p.Host.Name)
	for i, s := range p.Steps {
		fmt.Fprintf(&b, "%2d. %-20s %-7s", i+1, s.Name, s.Where)
		if len(s.Argv) > 0 {
			b.WriteString(" " + shellJoin(p.argv(s)))
		}
		if s.Stdin != InputNone {
			b.WriteString(" < " + string(s.Stdin))
		}
		if s.Cleanup {
			b.WriteString(" (always)")
		}
		b.WriteString("\n")
	}
	for _, n := range p.Notes {
		b.WriteString("    note: " + n + "\n")
	}
	return b.String()
}

// Argv is a step's argv as it will run, with the resolved revisions in
// place when the plan has them and the other placeholders left.
func (p *Plan) Argv(s Step) []string { return p.argv(s) }

func (p *Plan) argv(s Step) []string {
	if p.Locked == nil {
		return s.Argv
	}
	return fill(s.Argv, "", p.Locked)
}

// Plan builds the plan for action on the fleet host named host. Only
// hosts of the fleet config can be named. It connects nowhere.
func (d *Deployer) Plan(host string, action nixdeploy.Action) (*Plan, error) {
	h, ok := d.cfg.Host(host)
	if !ok {
		return nil, fmt.Errorf("%w: %q is not in the fleet config", nixdeploy.ErrUnknownHost, host)
	}
	if action == nixdeploy.ActionFlash {
		return d.flashPlan(h)
	}
	if _, err := nixdeploy.ParseAction(string(action)); err != nil {
		return nil, fmt.Errorf("%w: %v", nixdeploy.ErrInvalidInput, err)
	}
	t := d.opts.Timeouts
	p := &Plan{Host: h, Action: action}
	connect := Step{Name: "connect", Kind: KindConnect, Where: WhereBot, Timeout: t.Command}
	mktemp := Step{Name: "mktemp", Kind: KindTempDir, Where: WhereRunner, Argv: []string{"mktemp", "-d"}, Timeout: t.Command}
	knownHosts := Step{Name: "known-hosts", Kind: KindCommand, Where: WhereRunner, Stdin: InputKnownHosts, Timeout: t.Command,
		Argv: uploadArgv(knownHostsFile, "0644")}
	lockFlake := Step{Name: "lock-flake", Kind: KindLock, Where: WhereRunner, Timeout: t.Command,
		Argv: append(append([]string{"nix"}, nixFlags...), "flake", "metadata", "--json", d.cfg.Flake)}
	probe := Step{Name: "probe", Kind: KindProbe, Where: WhereTarget, Argv: []string{"readlink", d.opts.CurrentSystemPath}, Timeout: t.Command}
	verify := Step{Name: "verify", Kind: KindVerify, Where: WhereTarget, Timeout: t.Verify}
	removeTmp := Step{Name: "remove-tmp", Kind: KindCommand, Where: WhereRunner, Argv: []string{"rm", "-rf", "--", TempDir}, Timeout: t.Command, Cleanup: true}

	switch action {
	case nixdeploy.ActionInstall:
		p.Expect = ExpectChangeOrWarn
		p.Steps = []Step{
			{Name: "preflight", Kind: KindPreflight, Where: WhereBot, Timeout: t.Command},
			connect,
			mktemp,
			knownHosts,
			lockFlake,
			{Name: "lock-installer", Kind: KindLock, Where: WhereRunner, Timeout: t.Command,
				Argv: append(append([]string{"nix"}, nixFlags...), "flake", "metadata", "--json", d.cfg.InstallerFlake)},
			{Name: "disk-devices", Kind: KindDisks, Where: WhereRunner, Timeout: t.Command, Argv: DisksArgv(LockedInstaller, h.InstallerAttr)},
			{Name: "upload-host-key", Where: WhereRunner, Kind: KindCommand, Stdin: InputHostKey, Timeout: t.Command,
				Argv: uploadArgv(extraFilesDir+"/"+hostKeyRel, "0600", extraDirs(hostKeyRel)...)},
			{Name: "upload-host-key-pub", Where: WhereRunner, Kind: KindCommand, Stdin: InputHostPub, Timeout: t.Command,
				Argv: uploadArgv(extraFilesDir+"/"+hostKeyRel+".pub", "0644", extraDirs(hostKeyRel)...)},
		}
		if i := h.InitrdSSH; i != nil {
			rel := strings.TrimPrefix(i.HostKeyPath, "/")
			p.Steps = append(p.Steps, Step{Name: "upload-initrd-key", Where: WhereRunner, Kind: KindCommand, Stdin: InputInitrdKey, Timeout: t.Command,
				Argv: uploadArgv(extraFilesDir+"/"+rel, "0600", publicDirs(rel)...)})
		}
		if h.LUKS() {
			p.Steps = append(p.Steps, Step{Name: "upload-disk-key", Where: WhereRunner, Kind: KindCommand, Stdin: InputDiskKey, Timeout: t.Command,
				Argv: uploadArgv(diskKeyFile, "0600")})
		}
		p.Steps = append(p.Steps,
			Step{Name: "nixos-anywhere", Kind: KindCommand, Where: WhereRunner, Timeout: t.Install, Agent: true, Wipes: true,
				BuildOnRemoteIfForeign: !h.BuildOnTarget, Argv: d.anywhereArgv(h)},
			Step{Name: "remove-keys", Kind: KindCommand, Where: WhereRunner, Timeout: t.Command, Cleanup: true,
				Argv: []string{"rm", "-rf", "--", TempDir + "/" + extraFilesDir, TempDir + "/" + diskKeyFile}},
			Step{Name: "wait-for-ssh", Kind: KindWaitSSH, Where: WhereTarget, Timeout: t.WaitSSH},
			probe,
			Step{Name: "nixos-rebuild", Kind: KindCommand, Where: WhereRunner, Argv: d.rebuildArgv(h, "switch", false), Timeout: t.Rebuild, Agent: true},
			verify,
			removeTmp,
		)
		p.Notes = append(p.Notes,
			"nixos-anywhere cannot pin a host key before the new system exists (it meets the old OS's key, then the kexec installer's random one); the first trusted contact is the wait for "+h.Name+"'s pinned key after the reboot",
			h.BootNote())
		if !h.BuildOnTarget {
			p.Notes = append(p.Notes, "--build-on remote is added when the runner's system (probed once) is not "+h.System)
		}
		return p, nil
	case nixdeploy.ActionSwitch, nixdeploy.ActionTest:
		p.Expect = ExpectChangeOrWarn
	case nixdeploy.ActionRollback:
		p.Expect = ExpectChange
	case nixdeploy.ActionBoot, nixdeploy.ActionDryActivate:
		p.Expect = ExpectSame
	}
	argv := d.rebuildArgv(h, string(action), false)
	if action == nixdeploy.ActionRollback {
		argv = d.rebuildArgv(h, "switch", true)
	}
	p.Steps = []Step{
		connect,
		mktemp,
		knownHosts,
		lockFlake,
		probe,
		{Name: "nixos-rebuild", Kind: KindCommand, Where: WhereRunner, Argv: argv, Timeout: t.Rebuild, Agent: true},
		verify,
		removeTmp,
	}
	return p, nil
}

// UploadScript is exported so a simulated runner (internal/simfleet)
// recognises exactly what the deployer sends.
const UploadScript = uploadScript

// uploadScript writes stdin to <tmp>/FILE with MODE under umask 077, after
// creating the directories named after it 0755 (nixos-anywhere's
// --extra-files copy keeps modes: tar -cpf- . | tar -xf- --no-same-owner,
// so they become /, /etc and /etc/ssh on the target). Any other parent of
// FILE is made under the umask, 0700: /etc/secrets/initrd is root's alone,
// as nix/scripts/bootstrap-nixos.sh lays it out too.
const uploadScript = `umask 077 && t=$1 && f=$2 && m=$3 && shift 3 && for d in "$@"; do mkdir -p "$t/$d" && chmod 0755 "$t/$d"; done && case $f in */*) mkdir -p "$t/${f%/*}";; esac && cat >"$t/$f" && chmod "$m" "$t/$f"`

func uploadArgv(file, mode string, dirs ...string) []string {
	return append([]string{"sh", "-c", uploadScript, "sh", TempDir, file, mode}, dirs...)
}

// extraDirs lists extra-files and every directory of rel under it, parents
// first.
func extraDirs(rel string) []string {
	out := []string{extraFilesDir}
	parts := strings.Split(rel, "/")
	for i := 1; i < len(parts); i++ {
		out = append(out, extraFilesDir+"/"+strings.Join(parts[:i], "/"))
	}
	return out
}

// publicDirs is extraDirs(rel) without the private ones: those below
// etc/, other than etc/ssh, are left to the upload script's umask (0700).
func publicDirs(rel string) []string {
	var out []string
	for _, d := range extraDirs(rel) {
		if d == extraFilesDir || d == extraFilesDir+"/etc" || d == extraFilesDir+"/etc/ssh" {
			out = append(out, d)
		}
	}
	return out
}

// DisksArgv evaluates the disko disk devices of an installer
// configuration: {"main": "/dev/nvme0n1", …}.
func DisksArgv(flake, attr string) []string {
	return append(append([]string{"nix"}, nixFlags...), "eval", "--json",
		flake+"#nixosConfigurations."+attr+".config.disko.devices.disk",
		"--apply", "builtins.mapAttrs (n: d: d.device)")
}

// anywhereArgv is nixos-anywhere as src/nixos-anywhere.sh parses it: each
// flag with its arity, the host last and once (an unknown word before the
// host would be taken as the host).
func (d *Deployer) anywhereArgv(h nixdeploy.Host) []string {
	argv := []string{"nixos-anywhere"}
	if h.BuildOnTarget {
		argv = append(argv, "--build-on", "remote")
	}
	if len(h.Phases) > 0 {
		argv = append(argv, "--phases", strings.Join(h.Phases, ","))
	}
	if h.Kexec != "" {
		argv = append(argv, "--kexec", h.Kexec)
	}
	if h.KexecExtraFlags != "" {
		argv = append(argv, "--kexec-extra-flags", h.KexecExtraFlags)
	}
	argv = append(argv, "--ssh-port", strconv.Itoa(h.Port), "--extra-files", TempDir+"/"+extraFilesDir)
	if h.LUKS() {
		argv = append(argv, "--disk-encryption-keys", h.DiskKey, TempDir+"/"+diskKeyFile)
	}
	return append(argv, "--flake", LockedInstaller+"#"+h.InstallerAttr, "root@"+h.Address)
}

// SSHOpts is NIX_SSHOPTS for the runner's own ssh to h: the pinned
// known_hosts of the run directory and nothing else. nixos-rebuild-ng splits
// it with shlex.split (nixos_rebuild/process.py, Remote.from_arg), Nix with
// its shell-like splitter, so the words must not need quoting.
func SSHOpts(h nixdeploy.Host, tmp string) string {
	s := "-o UserKnownHostsFile=" + tmp + "/" + knownHostsFile + " -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes"
	if h.Port != nixdeploy.DefaultSSHPort {
		s += " -p " + strconv.Itoa(h.Port)
	}
	return s
}

// rebuildArgv is nixos-rebuild against the target. nixos-rebuild has no
// port or known_hosts flag; its ssh takes options from NIX_SSHOPTS only.
func (d *Deployer) rebuildArgv(h nixdeploy.Host, action string, rollback bool) []string {
	target := d.opts.TargetUser + "@" + h.Address
	argv := []string{"env", "NIX_SSHOPTS=" + SSHOpts(h, TempDir), "nixos-rebuild", action}
	if rollback {
		argv = append(argv, "--rollback")
	}
	// switch, boot and test re-execute the target's own nixos-rebuild
	// first; an x86_64 runner cannot build an aarch64 one (nixpkgs
	// #177873). --fast skips that and is known to both nixos-rebuilds.
	if h.BuildOnTarget && (action == "switch" || action == "boot" || action == "test") {
		argv = append(argv, "--fast")
	}
	argv = append(argv, "--flake", LockedFlake+"#"+h.FlakeAttr, "--target-host", target)
	if h.BuildOnTarget {
		argv = append(argv, "--build-host", target)
	}
	return argv
}

// fill puts the run's values in place of the placeholders: the temp dir
// (when known) and the locked flake URLs (when resolved).
func fill(argv []string, tmp string, l *nixdeploy.Lock) []string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if tmp != "" {
			a = strings.ReplaceAll(a, TempDir, tmp)
		}
		if l != nil {
			if l.URL != "" {
				a = strings.ReplaceAll(a, LockedFlake, l.URL)
			}
			if l.InstallerURL != "" {
				a = strings.ReplaceAll(a, LockedInstaller, l.InstallerURL)
			}
			if l.Image != "" {
				a = strings.ReplaceAll(a, FlashImage, l.Image)
			}
		}
		out[i] = a
	}
	return out
}

// localSystem is the Nix system of the bot's own machine, the runner when
// it is local.
func localSystem() string {
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[runtime.GOARCH]
	if arch == "" {
		arch = runtime.GOARCH
	}
	return arch + "-" + runtime.GOOS
}

// nixSystem maps `uname -m` (and `uname -s`) output to a Nix system.
func nixSystem(machine string) string {
	m := strings.TrimSpace(machine)
	switch m {
	case "arm64":
		m = "aarch64"
	case "amd64":
		m = "x86_64"
	}
	return m + "-linux"
}

// PlanOnly plans action on host under cfg without a Deployer: no key
// store, no connections (nixdeploy plan).
func PlanOnly(cfg *nixdeploy.Config, host string, action nixdeploy.Action) (*Plan, error) {
	return PlanRun(cfg, host, action, false)
}

// PlanRun is the plan a deployment runs: PlanOnly with the health checks
// and, when guard is set, the rollback guard (guard.go).
func PlanRun(cfg *nixdeploy.Config, host string, action nixdeploy.Action, guard bool) (*Plan, error) {
	opts := Options{Config: cfg}
	opts.defaults()
	d := &Deployer{opts: opts, cfg: cfg}
	p, err := d.Plan(host, action)
	if err != nil {
		return nil, err
	}
	d.shape(p, guard)
	return p, nil
}
