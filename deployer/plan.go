package deployer

import (
	"fmt"
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

// Step kinds. Only KindCommand and KindTempDir run Argv as given; the
// others are the deployer's own procedures, whose commands are fixed.
const (
	KindCommand   Kind = "command"
	KindPreflight Kind = "preflight"
	KindConnect   Kind = "connect"
	KindTempDir   Kind = "tempdir"
	KindWaitSSH   Kind = "wait-ssh"
	KindProbe     Kind = "probe"
	KindVerify    Kind = "verify"
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
)

// TempDir stands, as a whole argv element, for the directory the plan's
// KindTempDir step created on the runner.
const TempDir = "<tmp>"

// Step is one named step of a plan.
type Step struct {
	Name  string
	Kind  Kind
	Where Where
	Argv  []string
	Stdin Input
	// Timeout bounds the step; a step that runs over is stopped.
	Timeout time.Duration
	// Cleanup steps run whatever happened before them, cancel included,
	// under a context of their own.
	Cleanup bool
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
}

// String lists the steps, one a line, with their commands quoted as the
// remote shell receives them.
func (p *Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s:\n", p.Action, p.Host.Name)
	for i, s := range p.Steps {
		fmt.Fprintf(&b, "%2d. %-20s %-7s", i+1, s.Name, s.Where)
		if len(s.Argv) > 0 {
			b.WriteString(" " + shellJoin(s.Argv))
		}
		if s.Stdin != InputNone {
			b.WriteString(" < " + string(s.Stdin))
		}
		if s.Cleanup {
			b.WriteString(" (always)")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// Plan builds the plan for action on the fleet host named host. Only
// hosts of the fleet config can be named.
func (d *Deployer) Plan(host string, action nixdeploy.Action) (*Plan, error) {
	h, ok := d.cfg.Host(host)
	if !ok {
		return nil, fmt.Errorf("%w: %q is not in the fleet config", nixdeploy.ErrUnknownHost, host)
	}
	if _, err := nixdeploy.ParseAction(string(action)); err != nil {
		return nil, fmt.Errorf("%w: %v", nixdeploy.ErrInvalidInput, err)
	}
	t := d.opts.Timeouts
	p := &Plan{Host: h, Action: action}
	connect := Step{Name: "connect", Kind: KindConnect, Where: WhereBot, Timeout: t.Command}
	probe := Step{Name: "probe", Kind: KindProbe, Where: WhereTarget, Argv: []string{"readlink", d.opts.CurrentSystemPath}, Timeout: t.Command}
	verify := Step{Name: "verify", Kind: KindVerify, Where: WhereTarget, Timeout: t.Verify}

	switch action {
	case nixdeploy.ActionInstall:
		const upload = `umask 077 && mkdir -p "$1/etc/ssh" && chmod 0755 "$1" "$1/etc" "$1/etc/ssh" && cat >"$1/$2" && chmod "$3" "$1/$2"`
		key := "etc/ssh/ssh_host_ed25519_key"
		p.Expect = ExpectChangeOrWarn
		p.Steps = []Step{
			{Name: "preflight", Kind: KindPreflight, Where: WhereBot, Timeout: t.Command},
			connect,
			{Name: "mktemp", Kind: KindTempDir, Where: WhereRunner, Argv: []string{"mktemp", "-d"}, Timeout: t.Command},
			{Name: "upload-host-key", Where: WhereRunner, Kind: KindCommand, Stdin: InputHostKey, Timeout: t.Command,
				Argv: []string{"sh", "-c", upload, "sh", TempDir, key, "0600"}},
			{Name: "upload-host-key-pub", Where: WhereRunner, Kind: KindCommand, Stdin: InputHostPub, Timeout: t.Command,
				Argv: []string{"sh", "-c", upload, "sh", TempDir, key + ".pub", "0644"}},
			{Name: "nixos-anywhere", Kind: KindCommand, Where: WhereRunner, Timeout: t.Install,
				Argv: []string{"nixos-anywhere", "--ssh-port", strconv.Itoa(h.Port), "--extra-files", TempDir,
					"--flake", d.cfg.InstallerRef(h), "root@" + h.Address}},
			{Name: "remove-tmp", Kind: KindCommand, Where: WhereRunner, Argv: []string{"rm", "-rf", "--", TempDir}, Timeout: t.Command, Cleanup: true},
			{Name: "wait-for-ssh", Kind: KindWaitSSH, Where: WhereTarget, Timeout: t.WaitSSH},
			probe,
			{Name: "nixos-rebuild", Kind: KindCommand, Where: WhereRunner, Argv: d.rebuildArgv(h, "switch", false), Timeout: t.Rebuild},
			verify,
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
		probe,
		{Name: "nixos-rebuild", Kind: KindCommand, Where: WhereRunner, Argv: argv, Timeout: t.Rebuild},
		verify,
	}
	return p, nil
}

// rebuildArgv is nixos-rebuild against a root target. nixos-rebuild has no
// port flag; its ssh takes options from NIX_SSHOPTS.
func (d *Deployer) rebuildArgv(h nixdeploy.Host, action string, rollback bool) []string {
	var argv []string
	if h.Port != nixdeploy.DefaultSSHPort {
		argv = append(argv, "env", "NIX_SSHOPTS=-p "+strconv.Itoa(h.Port))
	}
	argv = append(argv, "nixos-rebuild", action)
	if rollback {
		argv = append(argv, "--rollback")
	}
	argv = append(argv, "--flake", d.cfg.FlakeRef(h), "--target-host", "root@"+h.Address)
	if h.BuildOnTarget {
		argv = append(argv, "--build-host", "root@"+h.Address)
	}
	return argv
}

// substitute puts the temp dir in place of TempDir.
func substitute(argv []string, tmp string) []string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a == TempDir {
			a = tmp
		}
		out[i] = a
	}
	return out
}
