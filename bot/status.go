package bot

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/commands"
	"github.com/nixdeploy/nixdeploy/runs"
	"github.com/nixdeploy/nixdeploy/schedules"
)

func stateWord(st nixdeploy.State) string {
	switch st {
	case nixdeploy.StateSucceeded:
		return ":white_check_mark: succeeded"
	case nixdeploy.StateFailed:
		return ":x: failed"
	case nixdeploy.StateRunning:
		return ":hourglass_flowing_sand: running"
	case nixdeploy.StateAwaiting:
		return ":raised_hand: awaiting approval"
	case nixdeploy.StateInterrupted:
		return ":warning: interrupted"
	}
	return string(st)
}

// sectionsOf packs lines into as few sections as Slack's limit allows.
func sectionsOf(head string, lines []string) []string {
	out := []string{}
	cur := head
	for _, l := range lines {
		if len(cur)+len(l)+1 > MaxSection && cur != "" {
			out = append(out, cur)
			cur = ""
		}
		if cur != "" {
			cur += "\n"
		}
		cur += l
	}
	if cur != "" {
		out = append(out, cur)
	}
	return out
}

func (b *Bot) hostsOrAll(hosts []string) []string {
	if len(hosts) > 0 {
		return hosts
	}
	cfg := b.Config()
	out := make([]string, len(cfg.Hosts))
	for i, h := range cfg.Hosts {
		out[i] = h.Name
	}
	return out
}

func (b *Bot) history(ctx context.Context, inv Invocation, cmd commands.Command) error {
	host := ""
	if len(cmd.Hosts) == 1 {
		host = cmd.Hosts[0]
	}
	deps, err := b.store.Deployments(ctx, host, cmd.N)
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	if len(deps) == 0 {
		return b.tell(ctx, inv, reply("No deployments yet."))
	}
	lines := make([]string, len(deps))
	for i, d := range deps {
		took := ""
		if !d.StartedAt.IsZero() && !d.EndedAt.IsZero() {
			took = " in " + human(d.EndedAt.Sub(d.StartedAt))
		}
		lines[i] = fmt.Sprintf("#%d %s %s — %s%s · %s · by %s", d.ID, d.Action, hostsText(d.Hosts), stateWord(d.State), took, utc(d.CreatedAt), mention(d.Requester))
	}
	head := "*History*"
	if host != "" {
		head = "*History of " + host + "*"
	}
	return b.tell(ctx, inv, Message{Kind: KindReply, Text: "nixdeploy history", Sections: sectionsOf(head, lines)})
}

// cancelCmd cancels a deployment in flight or awaiting approval. Only its
// requester or an approver may.
func (b *Bot) cancelCmd(ctx context.Context, inv Invocation, cmd commands.Command) error {
	cfg := b.Config()
	dep, err := b.store.Deployment(ctx, cmd.ID)
	if errors.Is(err, nixdeploy.ErrNotFound) {
		return userf(nixdeploy.ErrNotFound, "there is no deployment #%d; see /nixdeploy history", cmd.ID)
	}
	if err != nil {
		return fmt.Errorf("cancel %d: %w", cmd.ID, err)
	}
	if inv.User != dep.Requester && !isApprover(cfg, inv.User) {
		b.audit(ctx, inv.User, "cancel-refused", dep.ID, "not the requester or an approver")
		return userf(nixdeploy.ErrUnauthorized, "only the requester (%s) or an approver can cancel #%d", mention(dep.Requester), dep.ID)
	}
	if dep.State.Final() {
		return userf(nixdeploy.ErrInvalidInput, "#%d already ended (%s); nothing to cancel", dep.ID, dep.State)
	}
	out, err := b.life.Cancel(ctx, dep.ID, inv.User)
	switch {
	case errors.Is(err, runs.ErrEnded):
		cur, gerr := b.store.Deployment(ctx, dep.ID)
		if gerr != nil {
			return fmt.Errorf("cancel %d: %w", dep.ID, gerr)
		}
		return userf(nixdeploy.ErrInvalidInput, "#%d already ended (%s); nothing to cancel", dep.ID, cur.State)
	case errors.Is(err, runs.ErrElsewhere):
		return userf(nixdeploy.ErrHostBusy, "#%d is running in another nixdeploy process; cancel it there", dep.ID)
	case err != nil:
		return err
	}
	switch out {
	case runs.Stopping:
		return b.tell(ctx, inv, reply(fmt.Sprintf("Cancelling #%d; its status message will say when it stopped.", dep.ID)))
	case runs.CancelledPending:
		return b.tell(ctx, inv, reply(fmt.Sprintf("Cancelled #%d before it was approved.", dep.ID)))
	}
	return b.tell(ctx, inv, reply(fmt.Sprintf("Cancelled #%d.", dep.ID)))
}

func (b *Bot) lock(ctx context.Context, inv Invocation, cmd commands.Command) error {
	if err := b.requireDeployer(ctx, inv, "lock hosts", cmd); err != nil {
		return err
	}
	if b.locks == nil {
		return userf(nixdeploy.ErrInvalidInput, "locks are not available in this nixdeploy")
	}
	now := b.clock.Now().UTC()
	until := now.Add(cmd.Duration)
	for _, h := range cmd.Hosts {
		err := b.locks.LockHost(ctx, nixdeploy.HostLock{Host: h, Holder: inv.User, Reason: cmd.Reason, CreatedAt: now, ExpiresAt: until})
		if errors.Is(err, nixdeploy.ErrHostBusy) {
			b.audit(ctx, inv.User, "lock-refused", 0, h+" is locked by someone else")
			l, _, _ := b.locks.HostLockOf(ctx, h)
			return userf(nixdeploy.ErrHostBusy, "%s is already locked by %s until %s; ask them to unlock it", h, mention(l.Holder), utc(l.ExpiresAt))
		}
		if err != nil {
			return fmt.Errorf("lock %s: %w", h, err)
		}
		b.audit(ctx, inv.User, "locked", 0, fmt.Sprintf("%s until %s: %s", h, utc(until), cmd.Reason))
	}
	why := ""
	if cmd.Reason != "" {
		why = ": " + escape(cmd.Reason)
	}
	text := fmt.Sprintf(":lock: %s locked by %s until %s%s", hostsText(cmd.Hosts), mention(inv.User), utc(until), why)
	if _, err := b.chat.Post(ctx, b.channelFor(inv), Message{Kind: KindNotice, Text: text}); err != nil {
		b.log.Warn("announce lock", "err", err)
	}
	return nil
}

// unlockDisk sends a host's disk passphrase to its initrd (deployers
// only, audited; the passphrase never passes through the bot's chat or
// log).
func (b *Bot) unlockDisk(ctx context.Context, inv Invocation, cmd commands.Command) error {
	if err := b.requireDeployer(ctx, inv, "unlock disks", cmd); err != nil {
		return err
	}
	u, ok := b.deployer.(Unlocker)
	if !ok {
		return userf(nixdeploy.ErrInvalidInput, "disk unlocking is not available in this nixdeploy")
	}
	h := cmd.Hosts[0]
	b.audit(ctx, inv.User, "unlock-disk", 0, h)
	if err := u.Unlock(ctx, h); err != nil {
		b.audit(ctx, inv.User, "unlock-disk-failed", 0, h)
		return wordedOr(err, fmt.Sprintf("could not unlock %s: %s", h, oneLineErr(err)))
	}
	return b.tell(ctx, inv, reply(fmt.Sprintf(":key: %s's initrd presented its pinned key and got its disk passphrase (asked by %s); it should boot now.", h, mention(inv.User))))
}

func (b *Bot) unlock(ctx context.Context, inv Invocation, cmd commands.Command) error {
	if err := b.requireDeployer(ctx, inv, "unlock hosts", cmd); err != nil {
		return err
	}
	if b.locks == nil {
		return userf(nixdeploy.ErrInvalidInput, "locks are not available in this nixdeploy")
	}
	cfg := b.Config()
	var freed []string
	for _, h := range cmd.Hosts {
		l, ok, err := b.locks.HostLockOf(ctx, h)
		if err != nil {
			return fmt.Errorf("unlock %s: %w", h, err)
		}
		if !ok {
			continue
		}
		if l.Holder != inv.User && !isApprover(cfg, inv.User) {
			b.audit(ctx, inv.User, "unlock-refused", 0, h+" is locked by "+l.Holder)
			return userf(nixdeploy.ErrUnauthorized, "%s is locked by %s; only they or an approver can unlock it", h, mention(l.Holder))
		}
		if _, err := b.locks.UnlockHost(ctx, h); err != nil {
			return fmt.Errorf("unlock %s: %w", h, err)
		}
		b.audit(ctx, inv.User, "unlocked", 0, h)
		freed = append(freed, h)
	}
	if len(freed) == 0 {
		return b.tell(ctx, inv, reply(hostsText(cmd.Hosts)+" was not locked."))
	}
	text := fmt.Sprintf(":unlock: %s unlocked by %s", hostsText(freed), mention(inv.User))
	if _, err := b.chat.Post(ctx, b.channelFor(inv), Message{Kind: KindNotice, Text: text}); err != nil {
		b.log.Warn("announce unlock", "err", err)
	}
	return nil
}

func (b *Bot) listSchedules(ctx context.Context, inv Invocation) error {
	if b.schedules == nil {
		return b.tell(ctx, inv, reply("No schedules are configured."))
	}
	list, err := b.schedules.List(ctx)
	if err != nil {
		return fmt.Errorf("list schedules: %w", err)
	}
	if len(list) == 0 {
		return b.tell(ctx, inv, reply("No schedules are configured."))
	}
	lines := make([]string, len(list))
	for i, s := range list {
		state := "next " + s.Next.Format("2006-01-02 15:04 MST")
		if s.Paused {
			state = ":double_vertical_bar: paused by " + mention(s.PausedBy)
		}
		if s.RunningID != 0 {
			state += fmt.Sprintf(" · run #%d in progress", s.RunningID)
		}
		last := ""
		if s.Last != nil && s.Last.Outcome != "" {
			last = fmt.Sprintf(" · last %s %s", s.Last.Outcome, utc(s.Last.StartedAt))
		}
		lines[i] = fmt.Sprintf("*%s* `%s` (%s) %s %s, %s — %s%s", s.Name, s.Spec, s.TimeZone, s.Action, hostsText(s.Hosts), s.Strategy, state, last)
	}
	return b.tell(ctx, inv, Message{Kind: KindReply, Text: "nixdeploy schedules", Sections: sectionsOf("*Schedules*", lines)})
}

func (b *Bot) schedule(ctx context.Context, inv Invocation, cmd commands.Command) error {
	if err := b.requireDeployer(ctx, inv, "control schedules", cmd); err != nil {
		return err
	}
	if b.schedules == nil {
		return userf(nixdeploy.ErrNotFound, "no schedules are configured in the fleet config")
	}
	var text string
	switch cmd.ScheduleOp {
	case commands.SchedulePause:
		if err := b.schedules.Pause(ctx, cmd.Schedule, inv.User); err != nil {
			return fmt.Errorf("pause %s: %w", cmd.Schedule, err)
		}
		text = fmt.Sprintf(":double_vertical_bar: schedule %s paused by %s", cmd.Schedule, mention(inv.User))
	case commands.ScheduleResume:
		if err := b.schedules.Resume(ctx, cmd.Schedule, inv.User); err != nil {
			return fmt.Errorf("resume %s: %w", cmd.Schedule, err)
		}
		text = fmt.Sprintf(":arrow_forward: schedule %s resumed by %s", cmd.Schedule, mention(inv.User))
	case commands.ScheduleRun:
		id, err := b.schedules.RunNow(ctx, cmd.Schedule, inv.User)
		if errors.Is(err, schedules.ErrRunning) {
			return userf(err, "schedule %s is already running; wait for its summary", cmd.Schedule)
		}
		if err != nil {
			return fmt.Errorf("run %s: %w", cmd.Schedule, err)
		}
		text = fmt.Sprintf(":arrow_forward: schedule %s run #%d started by %s", cmd.Schedule, id, mention(inv.User))
	}
	if _, err := b.chat.Post(ctx, b.channelFor(inv), Message{Kind: KindNotice, Text: text}); err != nil {
		b.log.Warn("announce schedule change", "err", err)
	}
	return nil
}

func (b *Bot) keysCheck(ctx context.Context, inv Invocation, cmd commands.Command) error {
	if err := b.requireDeployer(ctx, inv, "check keys", cmd); err != nil {
		return err
	}
	if b.keys == nil {
		return userf(nixdeploy.ErrInvalidInput, "the key check is not available in this nixdeploy")
	}
	rep, err := b.keys.CheckKeys(ctx, b.hostsOrAll(cmd.Hosts))
	if err != nil {
		return fmt.Errorf("keys check: %w", err)
	}
	head := ":white_check_mark: keys check passed"
	if len(rep.Failures) > 0 {
		head = fmt.Sprintf(":x: keys check: %d problem(s)", len(rep.Failures))
	}
	body := rep.Table
	if len(rep.Failures) > 0 {
		body += "\n" + strings.Join(rep.Failures, "\n")
	}
	return b.tell(ctx, inv, replyBlock(head, body))
}
