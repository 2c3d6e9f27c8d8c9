package bot

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// Rendering of every message the bot posts. Everything that came from
// outside (log lines, reasons) goes through escape; Slack treats &, < and >
// as markup.

const timeLayout = "2006-01-02 15:04 UTC"

// maxTailLine bounds one shown log line; the full line is in the file.
const maxTailLine = 240

var escaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

func escape(s string) string { return escaper.Replace(s) }

func mention(user string) string {
	if user == "" {
		return "nobody"
	}
	if strings.HasPrefix(user, "schedule:") {
		return "schedule " + escape(strings.TrimPrefix(user, "schedule:"))
	}
	return "<@" + user + ">"
}

func mentions(users []string) string {
	if len(users) == 0 {
		return "nobody (add approvers to the fleet config)"
	}
	out := make([]string, len(users))
	for i, u := range users {
		out[i] = mention(u)
	}
	return strings.Join(out, ", ")
}

func utc(t time.Time) string { return t.UTC().Format(timeLayout) }

// human formats a duration the way people say it: 850ms, 42s, 4m12s, 15m,
// 1h3m, 2h.
func human(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	if d >= time.Hour {
		d = d.Round(time.Minute)
	} else {
		d = d.Round(time.Second)
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func title(dep nixdeploy.Deployment) string {
	return fmt.Sprintf("#%d %s %s", dep.ID, dep.Action, strings.Join(dep.Hosts, ", "))
}

// lineCount is "1 line" or "2,345 lines".
func lineCount(n int64) string {
	if n == 1 {
		return "1 line"
	}
	return count(n) + " lines"
}

func count(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// codeBlock renders lines as a code block of at most limit bytes, keeping
// the newest lines when they do not all fit.
func codeBlock(lines []string, limit int) string {
	const fence = "```"
	budget := limit - 2*len(fence) - 2
	var kept []string
	for i := len(lines) - 1; i >= 0; i-- {
		l := clip(strings.ReplaceAll(escape(lines[i]), fence, "'''"), maxTailLine)
		if l == "" {
			l = " "
		}
		if budget-len(l)-1 < 0 {
			break
		}
		budget -= len(l) + 1
		kept = append(kept, l)
	}
	if len(kept) == 0 {
		return fence + "\n(no output yet)\n" + fence
	}
	for i, j := 0, len(kept)-1; i < j; i, j = i+1, j-1 {
		kept[i], kept[j] = kept[j], kept[i]
	}
	return fence + "\n" + strings.Join(kept, "\n") + "\n" + fence
}

// Phases of nixos-anywhere, as its "### … ###" markers announce them.
var installPhases = []string{"kexec", "disko", "install", "reboot"}

// phaseOf maps a marker's text to an index in installPhases, len for
// "Done!", or -1 for a marker that does not start a phase.
func phaseOf(marker string) int {
	m := strings.ToLower(marker)
	switch {
	case strings.HasPrefix(m, "done"):
		return len(installPhases)
	case strings.Contains(m, "kexec"), strings.Contains(m, "unreachable"):
		// "Waiting for the machine to become unreachable due to reboot"
		// is the kexec reboot, not the final one.
		return 0
	case strings.Contains(m, "disko"), strings.Contains(m, "formatting"):
		return 1
	case strings.Contains(m, "installing"):
		return 2
	case strings.Contains(m, "reboot"):
		return 3
	}
	return -1
}

func phaseLine(reached int, failed bool) string {
	parts := make([]string, len(installPhases))
	for i, p := range installPhases {
		switch {
		case i < reached:
			parts[i] = "✓ " + p
		case i == reached && failed:
			parts[i] = "✗ " + p
		case i == reached:
			parts[i] = "▶ " + p
		default:
			parts[i] = "· " + p
		}
	}
	return strings.Join(parts, " → ")
}

// snapshot is the streamer's state at one moment, enough to render the
// status message.
type snapshot struct {
	dep        nixdeploy.Deployment
	approvedBy string
	elapsed    time.Duration
	host, step string
	// marker is the newest "### … ###" text; phase its index (-1: none).
	marker string
	phase  int
	lines  int64
	tail   []string
	// boot is what the installed hosts need at boot (installs only).
	boot string
}

func (s snapshot) header() string {
	who := "Requested by " + mention(s.dep.Requester)
	if s.approvedBy != "" {
		who += ", approved by " + mention(s.approvedBy)
	}
	return who + "."
}

func (s snapshot) progress(failed bool) string {
	var b strings.Builder
	if s.marker != "" {
		if s.phase >= 0 {
			fmt.Fprintf(&b, "*Phases:* %s\n", phaseLine(s.phase, failed))
		}
		if s.boot != "" {
			fmt.Fprintf(&b, "*At boot:* %s\n", s.boot)
		}
		fmt.Fprintf(&b, "*nixos-anywhere:* %s\n", escape(clip(s.marker, 200)))
	}
	if s.step != "" {
		fmt.Fprintf(&b, "*Step:* `%s`", escape(clip(s.step, 100)))
		if s.host != "" {
			fmt.Fprintf(&b, " on %s", escape(s.host))
		}
		b.WriteString(" · ")
	}
	b.WriteString(lineCount(s.lines))
	return b.String()
}

func runningMessage(s snapshot) Message {
	step := ""
	if s.step != "" {
		step = " (step " + s.step + ")"
	}
	return Message{
		Kind: KindStatus,
		Text: fmt.Sprintf("%s: running for %s%s", title(s.dep), human(s.elapsed), step),
		Sections: []string{
			fmt.Sprintf(":hourglass_flowing_sand: *%s* — running for %s\n%s", title(s.dep), human(s.elapsed), s.header()),
			s.progress(false),
			codeBlock(s.tail, MaxSection),
		},
	}
}

func outcomeIcon(st nixdeploy.State) string {
	switch st {
	case nixdeploy.StateSucceeded:
		return ":white_check_mark:"
	case nixdeploy.StateCancelled:
		return ":octagonal_sign:"
	case nixdeploy.StateInterrupted:
		return ":warning:"
	}
	return ":x:"
}

// finalMessage is the status message once the deployment ended.
func finalMessage(s snapshot, res Result, cancelledBy string) Message {
	verb := string(res.State)
	if cancelledBy != "" && res.State == nixdeploy.StateCancelled {
		verb = "cancelled by " + mention(cancelledBy)
	}
	head := fmt.Sprintf("%s *%s* — %s after %s", outcomeIcon(res.State), title(s.dep), verb, human(s.elapsed))
	if res.State == nixdeploy.StateSucceeded {
		head = fmt.Sprintf("%s *%s* — succeeded in %s", outcomeIcon(res.State), title(s.dep), human(s.elapsed))
	}
	sections := []string{head + "\n" + s.header(), s.progress(res.State == nixdeploy.StateFailed)}
	text := fmt.Sprintf("%s: %s after %s", title(s.dep), res.State, human(s.elapsed))
	if res.State != nixdeploy.StateSucceeded {
		var b strings.Builder
		if res.Step != "" {
			fmt.Fprintf(&b, "*Failing step:* `%s`", escape(clip(res.Step, 100)))
			if res.Host != "" {
				fmt.Fprintf(&b, " on %s", escape(res.Host))
			}
			fmt.Fprintf(&b, " · *exit code* %d\n", res.ExitCode)
			text += fmt.Sprintf(" (step %s, exit code %d)", res.Step, res.ExitCode)
		} else if res.ExitCode != 0 {
			fmt.Fprintf(&b, "*Exit code* %d\n", res.ExitCode)
		}
		if res.Err != nil {
			fmt.Fprintf(&b, "*Why:* %s", escape(UserMessage(res.Err)))
		}
		if b.Len() > 0 {
			sections = append(sections, b.String())
		}
	}
	sections = append(sections, "*Last lines:*\n"+codeBlock(s.tail, MaxSection-len("*Last lines:*\n")),
		fmt.Sprintf("The complete log (%s) is in the thread.", lineCount(s.lines)))
	return Message{Kind: KindStatus, Text: text, Sections: sections}
}

func interruptedMessage(dep nixdeploy.Deployment) Message {
	return Message{
		Kind: KindStatus,
		Text: title(dep) + ": interrupted",
		Sections: []string{fmt.Sprintf(":warning: *%s* — interrupted: nixdeploy restarted while it was in flight.\n"+
			"Requested by %s. Check the host with `/nixdeploy status %s` and run it again if needed.",
			title(dep), mention(dep.Requester), strings.Join(dep.Hosts, " "))},
	}
}

// planHost is what an approval binds for one host.
type planHost struct {
	Name      string
	Address   string
	Disk      string
	Flake     string
	Installer string
	// Revision and InstallerRevision are the commits resolved on the
	// runner; Devices the disks the installer's disko config formats
	// (name=device). Empty when the deployer could not resolve them.
	Revision          string
	InstallerRevision string
	Devices           []string
	// Boot says what the host needs at boot (LUKS passphrase or not).
	Boot string
}

// approvalMessage renders the approval request; decision, when set,
// replaces the instructions with what became of it.
func approvalMessage(dep nixdeploy.Deployment, plan []planHost, a nixdeploy.Approval, cfg *nixdeploy.Config, decision string) Message {
	sections := []string{fmt.Sprintf(":warning: *Approval needed: %s* — destructive: the disk is wiped and NixOS installed from scratch.", title(dep))}
	if len(plan) > 1 {
		// Every host and disk in the first section too: the per-host
		// sections below stop at Slack's block limit on a big fleet.
		var list strings.Builder
		for _, h := range plan {
			fmt.Fprintf(&list, "\n• *%s*: `%s`", escape(h.Name), escape(h.Disk))
		}
		sections[0] = fmt.Sprintf(":warning: *Approval needed: %s* — destructive: *%d disks* are wiped and NixOS installed from scratch on each:%s", title(dep), len(plan), list.String())
	}
	if decision != "" {
		sections[0] = decision + "\n~Approval needed: " + title(dep) + "~"
	}
	if dep.Action == nixdeploy.ActionFlash {
		sections, plan = flashSections(dep, cfg, decision), nil
	}
	for _, h := range plan {
		sec := fmt.Sprintf("*%s* (%s)\n• Disk that will be *wiped*: `%s`\n• Installer: `%s`\n• Flake: `%s`",
			escape(h.Name), escape(h.Address), escape(h.Disk), escape(h.Installer), escape(h.Flake))
		if h.Revision != "" {
			sec += fmt.Sprintf("\n• Commit: `%s` (installer `%s`)", escape(h.Revision), escape(h.InstallerRevision))
		}
		if len(h.Devices) > 0 {
			sec += fmt.Sprintf("\n• Disks the flake's disko config formats: `%s`", escape(strings.Join(h.Devices, " ")))
		}
		if h.Boot != "" {
			sec += "\n• At boot: " + h.Boot
		}
		sections = append(sections, sec)
	}
	short := a.Fingerprint
	if len(short) > 12 {
		short = short[:12]
	}
	if decision == "" {
		sections = append(sections, fmt.Sprintf("Requested by %s.\n"+
			"*Approve:* react :%s: — %s other than the requester: %s.\n"+
			"*Reject:* react :%s: (an approver or the requester).\n"+
			"Expires %s (%s after the request). Plan fingerprint `%s`.",
			mention(a.Requester), cfg.Slack.ApproveReaction, approversNeeded(cfg, dep), mentions(cfg.Slack.Approvers), cfg.Slack.RejectReaction,
			utc(a.ExpiresAt), human(a.ExpiresAt.Sub(a.CreatedAt)), short))
	} else {
		sections = append(sections, fmt.Sprintf("Requested by %s. Plan fingerprint `%s`.", mention(a.Requester), short))
	}
	text := fmt.Sprintf("Approval needed: %s requested by %s", title(dep), mention(a.Requester))
	if decision != "" {
		text = oneLine(strings.ReplaceAll(decision, "*", ""), 300)
	}
	return Message{Kind: KindApproval, Text: text, Sections: sections}
}

func reply(text string) Message {
	return Message{Kind: KindReply, Text: text}
}

// replyBlock is a reply with a preformatted body, such as status or help.
func replyBlock(text, body string) Message {
	return Message{Kind: KindReply, Text: text, Sections: []string{text, codeBlock(strings.Split(strings.TrimRight(body, "\n"), "\n"), MaxSection)}}
}
