package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/commands"
	"github.com/nixdeploy/nixdeploy/runs"
)

// Invocation is one slash command as a chat delivered it.
type Invocation struct {
	User    string
	Channel string
	// Text is what followed the slash command (a leading "/nixdeploy" is
	// accepted too).
	Text string
	// ResponseURL is Slack's response_url for the command: the way to
	// answer where chat.postEphemeral cannot (a DM, a channel the bot is
	// not in).
	ResponseURL string
}

// Reply is the immediate acknowledgement of a command, shown only to the
// user who typed it.
type Reply struct {
	Text string
}

// Command acknowledges a slash command and works on it in the background.
// It does no I/O, so it answers well inside Slack's 3 s: the reply echoes
// the command in canonical form, or says why it could not be parsed.
func (b *Bot) Command(inv Invocation) Reply {
	cmd, err := commands.Parse(b.Config(), inv.Text)
	if err != nil {
		return Reply{Text: UserMessage(err)}
	}
	echo := "`" + commands.Prefix + " " + cmd.String() + "`"
	if !b.handle(func(ctx context.Context) { b.execute(ctx, inv, cmd) }) {
		return Reply{Text: echo + " — nixdeploy is shutting down; try again in a minute"}
	}
	return Reply{Text: echo}
}

// execute does the work of a parsed command; whatever goes wrong is told
// to the user in one sentence and logged in full.
func (b *Bot) execute(ctx context.Context, inv Invocation, cmd commands.Command) {
	log := b.log.With("user", inv.User, "command", cmd.String())
	var err error
	switch cmd.Kind {
	case commands.KindDeploy:
		err = b.request(ctx, inv, cmd)
	case commands.KindStatus:
		err = b.status(ctx, inv, cmd)
	case commands.KindHistory:
		err = b.history(ctx, inv, cmd)
	case commands.KindCancel:
		err = b.cancelCmd(ctx, inv, cmd)
	case commands.KindLock:
		err = b.lock(ctx, inv, cmd)
	case commands.KindUnlock:
		err = b.unlock(ctx, inv, cmd)
	case commands.KindUnlockDisk:
		err = b.unlockDisk(ctx, inv, cmd)
	case commands.KindSchedules:
		err = b.listSchedules(ctx, inv)
	case commands.KindSchedule:
		err = b.schedule(ctx, inv, cmd)
	case commands.KindKeysCheck:
		err = b.keysCheck(ctx, inv, cmd)
	case commands.KindPower:
		err = b.power(ctx, inv, cmd)
	case commands.KindUART:
		err = b.uart(ctx, inv, cmd)
	case commands.KindHelp:
		text := commands.HelpTopic(cmd.Topic)
		err = b.tell(ctx, inv, replyBlock("nixdeploy help", text))
	default:
		err = userf(nixdeploy.ErrInvalidInput, "%s is not supported by this bot yet; try /nixdeploy help", cmd.Kind)
	}
	if err == nil {
		return
	}
	var ue *userError
	level := slog.LevelError
	if errors.As(err, &ue) || errors.Is(err, commands.ErrUsage) {
		level = slog.LevelInfo
	}
	log.Log(ctx, level, "command failed", "err", err)
	if terr := b.tell(ctx, inv, reply(UserMessage(err))); terr != nil {
		log.Error("tell user", "err", terr)
	}
}

func (b *Bot) requireDeployer(ctx context.Context, inv Invocation, what string, cmd commands.Command) error {
	if isDeployer(b.Config(), inv.User) {
		return nil
	}
	b.audit(ctx, inv.User, "refused-not-deployer", 0, cmd.String())
	return userf(nixdeploy.ErrUnauthorized, "only deployers may %s; ask an admin to add you to slack.deployers in the fleet config", what)
}

// request handles a deploy command: who may ask (Slack users and the
// chat policy are the bot's), then runs.Submit for each deployment it
// becomes: it checks the hosts are free, records it, and starts it or,
// for a destructive action, has the approval message posted.
func (b *Bot) request(ctx context.Context, inv Invocation, cmd commands.Command) error {
	cfg := b.Config()
	if err := b.requireDeployer(ctx, inv, "request deployments", cmd); err != nil {
		return err
	}
	if cmd.Action.Destructive() && !cfg.Slack.Destructive {
		b.audit(ctx, inv.User, "refused-destructive-disabled", 0, cmd.String())
		return userf(nixdeploy.ErrUnauthorized, "%s is destructive and disabled from chat (slack.destructive = false); run it from a terminal", cmd.Action)
	}
	if err := b.life.Free(ctx, inv.User, cmd.Hosts); err != nil {
		err = b.word(Result{Err: err})
		b.audit(ctx, inv.User, "refused-busy", 0, cmd.String()+": "+UserMessage(err))
		return err
	}
	groups := hostGroups(cfg, cmd)
	for i, hosts := range groups {
		what := cmd.String()
		if len(groups) > 1 {
			what = fmt.Sprintf("%s %s (%d of %d: one approval per host)", cmd.Action, hosts[0], i+1, len(groups))
		}
		sub, err := b.life.Submit(ctx, runs.Request{
			Request: nixdeploy.Request{Hosts: hosts, Action: cmd.Action, Requester: inv.User, Source: nixdeploy.SourceSlack, Image: cmd.Image, Guard: cmd.Guard},
			Channel: b.channelFor(inv), What: what,
		})
		if sub.Deployment.ID != 0 {
			b.announceOwnLock(ctx, inv, sub.Deployment)
		}
		if err != nil {
			if sub.Deployment.ID == 0 {
				b.audit(ctx, inv.User, "refused-busy", 0, cmd.String()+": "+UserMessage(b.word(Result{Err: err})))
			}
			return b.word(Result{Err: err})
		}
	}
	return nil
}

// announceOwnLock tells the channel when a lock holder deploys through
// their own lock: the lock told everyone else to keep off the host, so a
// change to it should not pass in silence.
func (b *Bot) announceOwnLock(ctx context.Context, inv Invocation, dep nixdeploy.Deployment) {
	if b.locks == nil {
		return
	}
	var held []string
	for _, h := range dep.Hosts {
		if l, ok, err := b.locks.HostLockOf(ctx, h); err == nil && ok && l.Holder == inv.User {
			held = append(held, h)
		}
	}
	if len(held) == 0 {
		return
	}
	text := fmt.Sprintf(":lock: #%d %s by %s goes through their own lock on %s", dep.ID, dep.Action, mention(inv.User), hostsText(held))
	if _, err := b.chat.Post(context.WithoutCancel(ctx), b.channelFor(inv), Message{Kind: KindNotice, Text: text}); err != nil {
		b.log.Warn("announce deployment through own lock", "deployment", dep.ID, "err", err)
	}
}

func hostsText(hosts []string) string { return strings.Join(hosts, ", ") }
