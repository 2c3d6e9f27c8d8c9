package commands

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/nixdeploy/nixdeploy"
)

// spec is one command word. The parser dispatches on kind, and Help and
// HelpTopic print the same entries, so a command cannot exist without help
// or the other way round.
type spec struct {
	name    string   // the canonical word, as String prints it
	aliases []string // other accepted spellings
	kind    Kind
	action  nixdeploy.Action // for KindDeploy
	sub     string           // a required second word, as in "keys check"
	args    string           // argument synopsis
	summary string
	example string // must parse against examples/fleet (tested)
}

var table = []spec{
	{name: "switch", kind: KindDeploy, action: nixdeploy.ActionSwitch, args: "HOST…",
		summary: "build, activate now and make it the boot default; a bare HOST… does the same",
		example: "switch rk1-node3 ganon"},
	{name: "boot", kind: KindDeploy, action: nixdeploy.ActionBoot, args: "HOST…",
		summary: "build and make it the boot default, to take effect at the next reboot",
		example: "boot @rk1"},
	{name: "test", kind: KindDeploy, action: nixdeploy.ActionTest, args: "HOST…",
		summary: "build and activate now without changing the boot default",
		example: "test rk1-node[1-2]"},
	// nixos-rebuild's own word, as the deploy CLI, the records and the
	// docs spell it; "dry-run" is accepted for people who type that.
	{name: "dry-activate", aliases: []string{"dry-run"}, kind: KindDeploy, action: nixdeploy.ActionDryActivate, args: "HOST…",
		summary: "build and show what activation would change, changing nothing",
		example: "dry-activate rk1-*"},
	{name: "rollback", kind: KindDeploy, action: nixdeploy.ActionRollback, args: "HOST…",
		summary: "go back to the previous generation",
		example: "rollback rk1-node3"},
	{name: "install", kind: KindDeploy, action: nixdeploy.ActionInstall, args: "HOST…",
		summary: "wipe the disk and install NixOS with nixos-anywhere (destructive: someone else must approve)",
		example: "install rk1-node4"},
	{name: "status", kind: KindStatus, args: "[HOST…]",
		summary: "the drift board: what each host runs, booted and should run, its last deployment and locks",
		example: "status @rk1"},
	{name: "history", kind: KindHistory, args: "[HOST] [N]",
		summary: fmt.Sprintf("list the last N deployments (default %d, at most %d)", DefaultHistory, MaxHistory),
		example: "history rk1-node3 20"},
	{name: "cancel", kind: KindCancel, args: "ID",
		summary: "cancel a queued or running deployment",
		example: "cancel 42"},
	{name: "lock", kind: KindLock, args: "HOST [DURATION] [REASON…]",
		summary: fmt.Sprintf("keep deployments off a host (default %s, at most %s)", formatDuration(DefaultLock), formatDuration(MaxLock)),
		example: "lock ganon 2h replacing the GPU"},
	{name: "unlock", kind: KindUnlock, args: "HOST",
		summary: "remove a lock",
		example: "unlock ganon"},
	{name: "unlock-disk", kind: KindUnlockDisk, args: "HOST",
		summary: "send a LUKS host's disk passphrase to its initrd SSH server after a reboot",
		example: "unlock-disk ganon"},
	{name: "schedules", kind: KindSchedules,
		summary: "list the schedules, their next runs and whether they are paused",
		example: "schedules"},
	{name: "schedule", kind: KindSchedule, args: "pause|resume|run NAME",
		summary: "pause or resume a schedule, or run it now",
		example: "schedule pause nightly-rk1"},
	{name: "keys", sub: "check", kind: KindKeysCheck, args: "[HOST…]",
		summary: "check the pre-generated host keys and the .sops.yaml recipients",
		example: "keys check ganon"},
	{name: "flash", kind: KindDeploy, action: nixdeploy.ActionFlash, args: "HOST IMAGE",
		summary: "write IMAGE, a file on the runner, to a Turing Pi node's eMMC through its BMC (destructive: someone else must approve)",
		example: "flash rk1-node3 /srv/images/rk1-staging.img"},
	{name: "power", kind: KindPower, args: "HOST status|on|off|reset",
		summary: "show or switch a Turing Pi node's power through its BMC (switching needs a deployer and a free host)",
		example: "power rk1-node3 status"},
	{name: "uart", kind: KindUART, args: "HOST",
		summary: "post the last lines of a Turing Pi node's serial console into a thread",
		example: "uart rk1-node3"},
	{name: "help", kind: KindHelp, args: "[TOPIC]",
		summary: "show this help, or the help for one command",
		example: "help lock"},
}

// lookup finds the spec for a command word. Words are matched
// case-insensitively because phones capitalise the first word of a message.
func lookup(word string) (spec, bool) {
	word = strings.ToLower(word)
	for _, s := range table {
		if s.name == word {
			return s, true
		}
		for _, a := range s.aliases {
			if a == word {
				return s, true
			}
		}
	}
	return spec{}, false
}

func commandWords() []string {
	var out []string
	for _, s := range table {
		out = append(out, s.name)
		out = append(out, s.aliases...)
	}
	return out
}

// words is the command as String prints it, without arguments.
func (s spec) words() string {
	if s.sub != "" {
		return s.name + " " + s.sub
	}
	return s.name
}

func (s spec) synopsis() string {
	if s.args == "" {
		return "/nixdeploy " + s.words()
	}
	return "/nixdeploy " + s.words() + " " + s.args
}

func (s spec) usage() string { return "usage: " + s.synopsis() }

const selectorHelp = `HOST is a host name, an @tag or a glob: ganon, @rk1, rk1-*, rk1-node[1-4].
Several hosts run in fleet order, one at a time, and stop at the first failure.
DURATION looks like 30m, 2h or 3d. Type plain ASCII: quotes and shell characters are refused.`

// Help is the full help text, one line per command.
func Help() string {
	var b strings.Builder
	b.WriteString("Usage: /nixdeploy COMMAND, or /nixdeploy HOST… to switch hosts.\n\n")
	// Pad by runes, not bytes: the synopses contain "…".
	width := 0
	for _, s := range table {
		width = max(width, utf8.RuneCountInString(s.synopsis()))
	}
	for _, s := range table {
		syn := s.synopsis()
		pad := strings.Repeat(" ", width-utf8.RuneCountInString(syn))
		fmt.Fprintf(&b, "  %s%s  %s\n", syn, pad, s.summary)
	}
	b.WriteString("\n")
	b.WriteString(selectorHelp)
	b.WriteString("\n")
	return b.String()
}

// HelpTopic is the help for one command, named as in "help TOPIC" (its
// first word is enough), or the full help when topic is empty or unknown.
func HelpTopic(topic string) string {
	words := strings.Fields(topic)
	if len(words) == 0 {
		return Help()
	}
	s, ok := lookup(words[0])
	if !ok {
		return Help()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n  %s\n", s.synopsis(), s.summary)
	if len(s.aliases) > 0 {
		fmt.Fprintf(&b, "  Also spelled: %s.\n", strings.Join(s.aliases, ", "))
	}
	fmt.Fprintf(&b, "  Example: /nixdeploy %s\n", s.example)
	if strings.Contains(s.args, "HOST") || strings.Contains(s.args, "DURATION") {
		b.WriteString("\n")
		b.WriteString(selectorHelp)
		b.WriteString("\n")
	}
	return b.String()
}
