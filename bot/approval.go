package bot

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/runs"
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
// message counts; approve needs an approver (runs.Approve refuses the
// requester, an expired approval and a changed plan); reject needs an
// approver or the requester. Who is an approver is a list of Slack users,
// so the bot checks it; everything about the request's life is runs'.
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
		if err := b.life.Reject(ctx, a.ID, r.User); err != nil && !errors.Is(err, runs.ErrDecided) {
			return err
		}
		return nil
	}
	if !isApprover(cfg, r.User) {
		b.audit(ctx, r.User, "approval-ignored-not-approver", a.DeploymentID, fmt.Sprintf("approve on approval %d", a.ID))
		log.Info("approval by non-approver ignored")
		return b.tell(ctx, inv, reply("Only approvers can approve destructive requests ("+mentions(cfg.Slack.Approvers)+"); your reaction changes nothing."))
	}
	err = b.life.Approve(ctx, a.ID, r.User)
	switch {
	case err == nil, errors.Is(err, runs.ErrDecided):
		return nil
	case errors.Is(err, runs.ErrSelfApproval):
		others := slices.DeleteFunc(slices.Clone(cfg.Slack.Approvers), func(u string) bool { return u == r.User })
		return b.tell(ctx, inv, reply("You requested this, so someone else must approve it: ask another approver ("+mentions(others)+")."))
	case errors.Is(err, runs.ErrExpired):
		return b.tell(ctx, inv, reply(fmt.Sprintf("This approval expired at %s; the requester must ask again.", utc(a.ExpiresAt))))
	case errors.Is(err, nixdeploy.ErrPlanChanged):
		return b.tell(ctx, inv, reply("The plan changed since this was requested, so the approval was refused; the requester must ask again."))
	case errors.Is(err, runs.ErrFirstOfTwo):
		dep, derr := b.store.Deployment(ctx, a.DeploymentID)
		if derr != nil {
			return derr
		}
		return b.tell(ctx, inv, reply(fmt.Sprintf("Noted: this install wipes %d disks, so a second approver other than you and the requester must approve it too.", len(dep.Hosts))))
	case errors.Is(err, runs.ErrSameApprover):
		return b.tell(ctx, inv, reply("You already approved this; a second, different approver must approve it too."))
	case errors.Is(err, runs.ErrNotStarted):
		// The approval message says so; the cancel's reply told the
		// requester.
		return nil
	}
	// Approved but not started (a busy host, a shutdown): the approval
	// message says why; tell the requester too.
	return b.tell(ctx, Invocation{User: a.Requester, Channel: a.Channel}, reply(UserMessage(b.word(Result{Err: err}))))
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
