package schedules

import (
	"fmt"
	"strings"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// Summary is what one run (or one skipped tick) posts when it ends.
type Summary struct {
	Schedule string
	RunID    int64
	Trigger  string
	// By is who started a manual run.
	By     string
	Action nixdeploy.Action
	// ScheduledAt is in the schedule's zone.
	ScheduledAt time.Time
	StartedAt   time.Time
	EndedAt     time.Time
	Outcome     nixdeploy.Outcome
	Detail      string
	// Hosts is in run order; empty for a skipped tick.
	Hosts []HostSummary
	// OnCall holds the Slack user ids to mention; set when the run failed
	// or was interrupted.
	OnCall []string
}

// HostSummary is one host's line in a Summary.
type HostSummary struct {
	Host         string
	Outcome      nixdeploy.Outcome
	DeploymentID int64
	Duration     time.Duration
	Detail       string
	// Link is a permalink to the deployment's thread, if any.
	Link string
	// Busy marks a host skipped because it stayed busy or locked.
	Busy bool
	// Revision is the flake revision the host's deployment deployed.
	Revision string
}

const timeLayout = "2006-01-02 15:04 MST"

// Text renders the summary as Slack mrkdwn: a headline, one line per host,
// and the on-call mentions when someone needs to look.
func (s Summary) Text() string {
	var b strings.Builder
	icon := map[nixdeploy.Outcome]string{
		OutcomeSucceeded:   "✅",
		OutcomeFailed:      "❌",
		OutcomeSkipped:     "⏭",
		OutcomeInterrupted: "⚠️",
	}[s.Outcome]
	if icon == "" {
		icon = "•"
	}
	fmt.Fprintf(&b, "%s *%s* (%s) %s", icon, s.Schedule, s.Action, s.Outcome)
	if s.Detail != "" {
		fmt.Fprintf(&b, ": %s", escape(s.Detail))
	}
	var meta []string
	if s.RunID != 0 {
		meta = append(meta, fmt.Sprintf("run #%d", s.RunID))
	}
	switch s.Trigger {
	case TriggerManual:
		if s.By != "" {
			meta = append(meta, "started by <@"+s.By+">")
		} else {
			meta = append(meta, "started by hand")
		}
	default:
		if !s.ScheduledAt.IsZero() {
			meta = append(meta, s.Trigger+" "+s.ScheduledAt.Format(timeLayout))
		}
	}
	if len(s.Hosts) > 0 && !s.EndedAt.IsZero() {
		meta = append(meta, roundDuration(s.EndedAt.Sub(s.StartedAt)).String())
	}
	if len(meta) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(meta, ", "))
	}
	for _, h := range s.Hosts {
		b.WriteString("\n")
		b.WriteString(h.line())
	}
	if len(s.OnCall) > 0 {
		b.WriteString("\n")
		for i, u := range s.OnCall {
			if i > 0 {
				b.WriteString(" ")
			}
			b.WriteString("<@" + u + ">")
		}
		b.WriteString(" please take a look.")
	}
	return b.String()
}

func (h HostSummary) line() string {
	var b strings.Builder
	switch h.Outcome {
	case OutcomeSucceeded:
		b.WriteString("✅ " + h.Host)
	case OutcomeFailed:
		b.WriteString("❌ " + h.Host)
	case OutcomeUntouched:
		return "⏭ " + h.Host + " not touched (" + escape(h.Detail) + ")"
	case OutcomeSkipped:
		if h.Busy {
			return "⏭ " + h.Host + " busy, skipped (" + escape(h.Detail) + ")"
		}
		return "⏭ " + h.Host + " skipped (" + escape(h.Detail) + ")"
	case OutcomeInterrupted:
		b.WriteString("⚠️ " + h.Host + " interrupted")
	default:
		b.WriteString("• " + h.Host + " " + string(h.Outcome))
	}
	fmt.Fprintf(&b, " %s", roundDuration(h.Duration))
	switch {
	case h.DeploymentID != 0 && h.Link != "":
		fmt.Fprintf(&b, " <%s|deployment #%d>", h.Link, h.DeploymentID)
	case h.DeploymentID != 0:
		fmt.Fprintf(&b, " deployment #%d", h.DeploymentID)
	case h.Link != "":
		fmt.Fprintf(&b, " <%s|thread>", h.Link)
	}
	if h.Revision != "" {
		fmt.Fprintf(&b, " at `%s`", ShortRevision(h.Revision))
	}
	if h.Detail != "" {
		b.WriteString(": " + escape(h.Detail))
	}
	return b.String()
}

// ShortRevision is a commit as people quote it: its first 12 characters.
func ShortRevision(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

func roundDuration(d time.Duration) time.Duration { return d.Round(time.Second) }

// escape keeps text from the deployer from turning into Slack markup
// (mentions, links) when posted.
func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
