package bot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nixdeploy/nixdeploy"
)

// Reaction is a reaction_added or reaction_removed event.
type Reaction struct {
	User    string
	Name    string
	Channel string
	TS      string
	Removed bool
}

// plan resolves what a deployment would touch under cfg.
func plan(cfg *nixdeploy.Config, dep nixdeploy.Deployment) ([]planHost, error) {
	out := make([]planHost, 0, len(dep.Hosts))
	for _, name := range dep.Hosts {
		h, ok := cfg.Host(name)
		if !ok {
			return nil, fmt.Errorf("%w: %s is no longer in the fleet config", nixdeploy.ErrUnknownHost, name)
		}
		ph := planHost{
			Name: h.Name, Address: h.SSHAddr(), Disk: h.Disk,
			Flake: cfg.FlakeRef(h), Installer: cfg.InstallerRef(h), Boot: h.BootNote(),
		}
		if l := dep.Lock; l != nil {
			ph.Revision, ph.InstallerRevision = l.Revision, l.InstallerRevision
			for n, d := range l.Devices[h.Name] {
				ph.Devices = append(ph.Devices, n+"="+d)
			}
			slices.Sort(ph.Devices)
		}
		out = append(out, ph)
	}
	return out, nil
}

// Fingerprint binds an approval to what a destructive deployment would do:
// sha256 over each host's name, the action, the flake and installer refs,
// the disk and the address, as cfg has them now. Any change voids it.
func Fingerprint(cfg *nixdeploy.Config, dep nixdeploy.Deployment) (string, error) {
	hosts, err := plan(cfg, dep)
	if err != nil {
		return "", err
	}
	return fingerprint(dep.Action, hosts), nil
}

// planFingerprint is the deployer's plan fingerprint when it offers one
// (every step's argv, host, address, disk, action and locked revisions:
// the plan that runs is the plan approved), else fingerprint of the
// config's view of the hosts.
func (b *Bot) planFingerprint(dep nixdeploy.Deployment, hosts []planHost) (string, error) {
	r, ok := b.deployer.(Resolver)
	if !ok {
		return fingerprint(dep.Action, hosts), nil
	}
	return r.Fingerprint(dep)
}

func fingerprint(action nixdeploy.Action, hosts []planHost) string {
	h := sha256.New()
	for _, p := range hosts {
		// NUL separators: no field can contain one, so no two plans
		// serialise alike.
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%s\x00%s\x00%s\x00%s\x00%s\x00\x00", p.Name, action, p.Flake, p.Installer, p.Disk, p.Address,
			p.Revision, p.InstallerRevision, strings.Join(p.Devices, ","))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// askApproval stores a pending approval for dep and posts its message.
func (b *Bot) askApproval(ctx context.Context, dep nixdeploy.Deployment, channel string) error {
	cfg := b.Config()
	if r, ok := b.deployer.(Resolver); ok && dep.Lock == nil {
		// Pin what will run before anyone approves it: the revision and
		// the disks the flake formats, asked on the runner.
		lock, err := r.Resolve(ctx, dep)
		if err != nil {
			err = wordedOr(err, "could not resolve what would run: "+oneLineErr(err))
			b.finishUnstarted(ctx, dep, nixdeploy.StateFailed, err)
			return fmt.Errorf("resolve the flake before asking for approval: %w", err)
		}
		dep.Lock = lock
		if err := b.life.SetLock(ctx, dep.ID, lock); err != nil {
			return fmt.Errorf("record the resolved revision: %w", err)
		}
	}
	hosts, err := plan(cfg, dep)
	if err != nil {
		return err
	}
	fp, err := b.planFingerprint(dep, hosts)
	if err != nil {
		return err
	}
	now := b.clock.Now().UTC()
	a := nixdeploy.Approval{
		DeploymentID: dep.ID, Fingerprint: fp, Requester: dep.Requester,
		State: nixdeploy.ApprovalPending, CreatedAt: now, ExpiresAt: now.Add(cfg.Slack.ApprovalTTL.Duration),
	}
	if err := b.life.CreateApproval(ctx, &a); err != nil {
		return fmt.Errorf("create approval: %w", err)
	}
	ts, err := b.chat.Post(ctx, channel, approvalMessage(dep, hosts, a, cfg, ""))
	if err != nil {
		// Without a message nobody can approve; end it now rather than
		// leave a pending approval no one can see.
		if ok, derr := b.life.DecideApproval(context.WithoutCancel(ctx), a.ID, nixdeploy.ApprovalRejected, "nixdeploy"); derr != nil || !ok {
			b.log.Error("void unposted approval", "approval", a.ID, "err", derr)
		}
		b.finishUnstarted(ctx, dep, nixdeploy.StateCancelled, err)
		return fmt.Errorf("post approval message: %w", err)
	}
	a.Channel, a.MessageTS = channel, ts
	if err := b.life.SetApprovalMessage(ctx, a.ID, channel, ts); err != nil {
		return fmt.Errorf("record approval message: %w", err)
	}
	if err := b.life.SetMessage(ctx, dep.ID, channel, ts); err != nil {
		b.log.Error("record approval message on deployment", "deployment", dep.ID, "err", err)
	}
	b.audit(ctx, "nixdeploy", "approval-posted", dep.ID, fmt.Sprintf("approval %d, fingerprint %s, expires %s", a.ID, a.Fingerprint, utc(a.ExpiresAt)))
	// Seed the two reactions so approving is one click; the bot's own
	// reactions are ignored when they come back as events.
	for _, name := range []string{cfg.Slack.ApproveReaction, cfg.Slack.RejectReaction} {
		if err := b.chat.React(ctx, channel, ts, name); err != nil {
			b.log.Warn("seed reaction", "approval", a.ID, "reaction", name, "err", err)
		}
	}
	b.armExpiry(a)
	return nil
}

// armExpiry makes a pending approval expire at its ExpiresAt, which may
// already have passed after a restart.
func (b *Bot) armExpiry(a nixdeploy.Approval) {
	fire := func() {
		b.spawn(func(ctx context.Context) {
			if err := b.expire(ctx, a.ID, ""); err != nil {
				b.log.Error("expire approval", "approval", a.ID, "err", err)
			}
		})
	}
	d := a.ExpiresAt.Sub(b.clock.Now())
	if d <= 0 {
		fire()
		return
	}
	stop := b.clock.AfterFunc(d, fire)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		stop()
		return
	}
	if old := b.timers[a.ID]; old != nil {
		old()
	}
	b.timers[a.ID] = stop
}

func (b *Bot) disarm(approvalID int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if stop := b.timers[approvalID]; stop != nil {
		stop()
		delete(b.timers, approvalID)
	}
}

// pendingFor finds the pending approval of a deployment; the store looks
// approvals up by message, so this scans the (short) pending list.
func (b *Bot) pendingFor(ctx context.Context, depID int64) (nixdeploy.Approval, bool, error) {
	pending, err := b.store.PendingApprovals(ctx)
	if err != nil {
		return nixdeploy.Approval{}, false, err
	}
	for _, a := range pending {
		if a.DeploymentID == depID {
			return a, true, nil
		}
	}
	return nixdeploy.Approval{}, false, nil
}

// expire ends a pending approval whose time ran out. by is the user whose
// late approve reaction noticed it, or empty for the timer.
func (b *Bot) expire(ctx context.Context, approvalID int64, by string) error {
	pending, err := b.store.PendingApprovals(ctx)
	if err != nil {
		return err
	}
	var a nixdeploy.Approval
	found := false
	for _, p := range pending {
		if p.ID == approvalID {
			a, found = p, true
		}
	}
	if !found {
		return nil
	}
	if by != "" {
		b.audit(ctx, by, "approval-refused-expired", a.DeploymentID, fmt.Sprintf("approval %d expired at %s", a.ID, utc(a.ExpiresAt)))
	}
	decision := fmt.Sprintf(":hourglass: *Expired* at %s: nobody approved in time. Request it again if it is still wanted.", utc(a.ExpiresAt))
	_, err = b.decide(ctx, a, nixdeploy.ApprovalExpired, nixdeploy.StateExpired, "", "expired", decision)
	return err
}

// decide moves a pending approval and its deployment to their end states,
// once, and rewrites the approval message. It reports false when the
// approval was decided elsewhere first.
func (b *Bot) decide(ctx context.Context, a nixdeploy.Approval, as nixdeploy.ApprovalState, ds nixdeploy.State, by, kind, decision string) (bool, error) {
	ok, err := b.life.DecideApproval(ctx, a.ID, as, by)
	if err != nil || !ok {
		return false, err
	}
	b.disarm(a.ID)
	actor := by
	if actor == "" {
		actor = "nixdeploy"
	}
	b.audit(ctx, actor, kind, a.DeploymentID, fmt.Sprintf("approval %d", a.ID))
	if err := b.life.SetState(ctx, a.DeploymentID, ds); err != nil && !errors.Is(err, nixdeploy.ErrNotFound) {
		b.log.Error("end deployment after approval decision", "deployment", a.DeploymentID, "err", err)
	}
	b.log.Info("approval decided", "approval", a.ID, "deployment", a.DeploymentID, "state", as, "by", by)
	if b.observer != nil {
		if dep, err := b.store.Deployment(ctx, a.DeploymentID); err == nil {
			b.observe(dep, ds, 0)
		}
	}
	return true, b.rewriteApproval(ctx, a, decision)
}

func (b *Bot) rewriteApproval(ctx context.Context, a nixdeploy.Approval, decision string) error {
	if a.Channel == "" || a.MessageTS == "" {
		return nil
	}
	dep, err := b.store.Deployment(ctx, a.DeploymentID)
	if err != nil {
		return err
	}
	cfg := b.Config()
	hosts, err := plan(cfg, dep)
	if err != nil {
		hosts = nil
	}
	return b.chat.Update(context.WithoutCancel(ctx), a.Channel, a.MessageTS, approvalMessage(dep, hosts, a, cfg, decision))
}

// React handles a reaction event in the background.
func (b *Bot) React(r Reaction) {
	b.handle(func(ctx context.Context) {
		if err := b.reaction(ctx, r); err != nil {
			b.log.Error("reaction", "user", r.User, "reaction", r.Name, "ts", r.TS, "err", err)
		}
	})
}

// reaction decides what a reaction means. Only a reaction on an approval
// message counts; approve needs an approver who is not the requester,
// before expiry, with the plan unchanged; reject needs an approver or the
// requester.
func (b *Bot) reaction(ctx context.Context, r Reaction) error {
	cfg := b.Config()
	if r.Removed || (b.botUser != "" && r.User == b.botUser) {
		return nil
	}
	approve, reject := r.Name == cfg.Slack.ApproveReaction, r.Name == cfg.Slack.RejectReaction
	if !approve && !reject {
		return nil
	}
	a, err := b.store.ApprovalByMessage(ctx, r.Channel, r.TS)
	if errors.Is(err, nixdeploy.ErrNotFound) {
		b.log.Debug("reaction on a message that is not an approval", "user", r.User, "ts", r.TS)
		return nil
	}
	if err != nil {
		return err
	}
	log := b.log.With("approval", a.ID, "deployment", a.DeploymentID, "user", r.User, "reaction", r.Name)
	if a.State != nixdeploy.ApprovalPending {
		b.audit(ctx, r.User, "approval-ignored-decided", a.DeploymentID, fmt.Sprintf("%s on approval %d, already %s", r.Name, a.ID, a.State))
		return nil
	}
	inv := Invocation{User: r.User, Channel: r.Channel}
	if reject {
		if !isApprover(cfg, r.User) && r.User != a.Requester {
			b.audit(ctx, r.User, "approval-ignored-not-approver", a.DeploymentID, fmt.Sprintf("reject on approval %d", a.ID))
			log.Info("reject by non-approver ignored")
			return b.tell(ctx, inv, reply("Only an approver or the requester can reject this request; your reaction changes nothing."))
		}
		decision := fmt.Sprintf(":no_entry_sign: *Rejected* by %s at %s.", mention(r.User), utc(b.clock.Now()))
		_, err := b.decide(ctx, a, nixdeploy.ApprovalRejected, nixdeploy.StateRejected, r.User, "rejected", decision)
		return err
	}
	switch {
	case !isApprover(cfg, r.User):
		b.audit(ctx, r.User, "approval-ignored-not-approver", a.DeploymentID, fmt.Sprintf("approve on approval %d", a.ID))
		log.Info("approval by non-approver ignored")
		return b.tell(ctx, inv, reply("Only approvers can approve destructive requests ("+mentions(cfg.Slack.Approvers)+"); your reaction changes nothing."))
	case r.User == a.Requester:
		b.audit(ctx, r.User, "approval-refused-self", a.DeploymentID, fmt.Sprintf("approval %d", a.ID))
		log.Info("self-approval refused")
		others := slices.DeleteFunc(slices.Clone(cfg.Slack.Approvers), func(u string) bool { return u == r.User })
		return b.tell(ctx, inv, reply("You requested this, so someone else must approve it: ask another approver ("+mentions(others)+")."))
	case !b.clock.Now().Before(a.ExpiresAt):
		log.Info("approval after expiry refused")
		if err := b.expire(ctx, a.ID, r.User); err != nil {
			return err
		}
		return b.tell(ctx, inv, reply(fmt.Sprintf("This approval expired at %s; the requester must ask again.", utc(a.ExpiresAt))))
	}
	dep, err := b.store.Deployment(ctx, a.DeploymentID)
	if err != nil {
		return err
	}
	hosts, perr := plan(cfg, dep)
	var fp string
	if perr == nil {
		fp, perr = b.planFingerprint(dep, hosts)
	}
	if perr != nil || fp != a.Fingerprint {
		b.audit(ctx, r.User, "approval-refused-changed", dep.ID, fmt.Sprintf("approval %d: plan fingerprint changed", a.ID))
		log.Warn("approval refused: plan changed since the request")
		decision := ":no_entry: *Void*: the plan (host, address, disk, flake or installer) changed since this was requested, so this approval no longer applies. Request it again."
		if _, err := b.decide(ctx, a, nixdeploy.ApprovalRejected, nixdeploy.StateCancelled, "nixdeploy", "approval-void", decision); err != nil {
			return err
		}
		return b.tell(ctx, inv, reply("The plan changed since this was requested, so the approval was refused; the requester must ask again."))
	}
	if needsTwoApprovers(cfg, dep) {
		if pending, err := b.firstOfTwo(ctx, a, dep, r.User); pending || err != nil {
			return err
		}
	}
	ok, err := b.life.DecideApproval(ctx, a.ID, nixdeploy.ApprovalApproved, r.User)
	if err != nil || !ok {
		return err
	}
	b.disarm(a.ID)
	b.audit(ctx, r.User, "approved", dep.ID, fmt.Sprintf("approval %d, fingerprint %s", a.ID, a.Fingerprint))
	log.Info("approved")
	// The run carries the fingerprint approved when it is the deployer's;
	// the deployer refuses to wipe a disk with any other plan.
	if _, ok := b.deployer.(Resolver); ok {
		dep.Fingerprint = a.Fingerprint
	}
	// Mark it running before saying so: a cancel may have ended the
	// request between the approval and now, and then every message says
	// that instead.
	err = b.startRun(ctx, dep, a.Channel, r.User, func() {
		decision := fmt.Sprintf(":white_check_mark: *Approved* by %s at %s — running as #%d, progress below.", mention(r.User), utc(b.clock.Now()), dep.ID)
		if err := b.rewriteApproval(ctx, a, decision); err != nil {
			log.Warn("rewrite approval message", "err", err)
		}
	})
	if err == nil {
		return nil
	}
	decision := fmt.Sprintf(":octagonal_sign: *Approved* by %s at %s, but not started: %s", mention(r.User), utc(b.clock.Now()), UserMessage(err))
	if werr := b.rewriteApproval(ctx, a, decision); werr != nil {
		log.Warn("rewrite approval message", "err", werr)
	}
	if errors.Is(err, errNotStarted) {
		return nil
	}
	return b.tell(ctx, Invocation{User: dep.Requester, Channel: a.Channel}, reply(UserMessage(err)))
}

// approvalsSummary lists pending approvals for status.
func approvalsSummary(pending []nixdeploy.Approval) string {
	if len(pending) == 0 {
		return ""
	}
	parts := make([]string, len(pending))
	for i, a := range pending {
		parts[i] = fmt.Sprintf("#%d (expires %s)", a.DeploymentID, utc(a.ExpiresAt))
	}
	return "awaiting approval: " + strings.Join(parts, ", ")
}
