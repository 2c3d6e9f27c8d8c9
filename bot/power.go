package bot

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/commands"
)

// BMC is a Turing Pi board's management controller as the bot drives it:
// power and serial console of one host's slot. cmd/nixdeploy satisfies it
// with package bmc.
type BMC interface {
	// Power applies op to host's slot and returns the slot's state
	// afterwards (for PowerStatus, as it is).
	Power(ctx context.Context, host string, op nixdeploy.PowerOp) (nixdeploy.PowerState, error)
	// UART returns at most the last n lines of the host's serial
	// console, printable (no terminal escapes or carriage returns) and
	// redacted like every deployment log.
	UART(ctx context.Context, host string, n int) ([]string, error)
}

// UARTLines is how many console lines go into the thread; UARTShown how
// many of them the message itself shows.
const (
	UARTLines = 200
	UARTShown = 15
)

var errNoBMC = userf(nixdeploy.ErrInvalidInput, "no Turing Pi BMC is wired into this nixdeploy; add a [[bmcs]] board and set its password in the environment")

// power handles "/nixdeploy power HOST OP". Reading the state is open to
// everyone. Switching (on, off, reset) needs a deployer and the host free
// of deployments and of other people's locks, holds the host while it
// runs, and is audited like a deployment. The issue asked this of off and
// reset; on gets it too, since powering up a node someone locked to work
// on it is no safer.
func (b *Bot) power(ctx context.Context, inv Invocation, cmd commands.Command) error {
	if b.bmc == nil {
		return errNoBMC
	}
	host, op := cmd.Hosts[0], cmd.PowerOp
	if op.Changes() {
		if err := b.requireDeployer(ctx, inv, "switch a node's power", cmd); err != nil {
			return err
		}
		if err := b.life.Free(ctx, inv.User, []string{host}); err != nil {
			err = b.word(Result{Err: err})
			b.audit(ctx, inv.User, "refused-busy", 0, cmd.String()+": "+UserMessage(err))
			return err
		}
		release, err := b.holdHost(host, fmt.Sprintf("power %s by %s", op, mention(inv.User)))
		if err != nil {
			b.audit(ctx, inv.User, "refused-busy", 0, cmd.String()+": "+UserMessage(err))
			return err
		}
		defer release()
		b.audit(ctx, inv.User, "power-requested", 0, cmd.String())
		b.log.Info("power requested", "host", host, "op", op, "user", inv.User)
	}
	st, err := b.bmc.Power(ctx, host, op)
	if err != nil {
		if op != nixdeploy.PowerStatus {
			b.audit(ctx, inv.User, "power-failed", 0, cmd.String()+": "+UserMessage(err))
		}
		return fmt.Errorf("power %s %s: %w", op, host, err)
	}
	if op == nixdeploy.PowerStatus {
		return b.tell(ctx, inv, reply(fmt.Sprintf("%s is powered %s%s.", host, st, b.slotText(host))))
	}
	b.audit(ctx, inv.User, "power-"+string(op), 0, fmt.Sprintf("%s: now %s", cmd.String(), st))
	verb := map[nixdeploy.PowerOp]string{
		nixdeploy.PowerOn:    ":electric_plug: %s switched on by %s%s; it is %s now",
		nixdeploy.PowerOff:   ":electric_plug: %s switched off by %s%s; it is %s now",
		nixdeploy.PowerReset: ":arrows_counterclockwise: %s power-cycled by %s%s; it is %s now",
	}[op]
	text := fmt.Sprintf(verb, host, mention(inv.User), b.slotText(host), st)
	if _, err := b.chat.Post(ctx, b.channelFor(inv), Message{Kind: KindNotice, Text: text}); err != nil {
		b.log.Warn("announce power change", "host", host, "err", err)
	}
	return nil
}

// slotText is " (slot 3 of turingpi)" for a host on a board.
func (b *Bot) slotText(host string) string {
	h, ok := b.Config().Host(host)
	if !ok || h.BMC == "" {
		return ""
	}
	return fmt.Sprintf(" (slot %d of %s)", h.BMCNode, h.BMC)
}

// uart handles "/nixdeploy uart HOST": a notice in the channel with the
// newest lines and, in its thread, the last UARTLines lines as a file.
// A console can show anything a node prints, so only deployers may ask.
func (b *Bot) uart(ctx context.Context, inv Invocation, cmd commands.Command) error {
	if b.bmc == nil {
		return errNoBMC
	}
	host := cmd.Hosts[0]
	if err := b.requireDeployer(ctx, inv, "read a node's serial console", cmd); err != nil {
		return err
	}
	lines, err := b.bmc.UART(ctx, host, UARTLines)
	if err != nil {
		return fmt.Errorf("uart %s: %w", host, err)
	}
	lines = lines[max(0, len(lines)-UARTLines):]
	b.audit(ctx, inv.User, "uart", 0, fmt.Sprintf("%s: %d lines", cmd.String(), len(lines)))
	if len(lines) == 0 {
		return b.tell(ctx, inv, reply(fmt.Sprintf("The serial console of %s is empty: it printed nothing since the BMC started.", host)))
	}
	channel := b.channelFor(inv)
	head := fmt.Sprintf(":desktop_computer: Serial console of %s%s, last %d lines, for %s", host, b.slotText(host), len(lines), mention(inv.User))
	shown := lines[max(0, len(lines)-UARTShown):]
	ts, err := b.chat.Post(ctx, channel, Message{Kind: KindNotice, Text: head, Sections: []string{head, codeBlock(shown, MaxSection)}})
	if err != nil {
		return fmt.Errorf("post uart of %s: %w", host, err)
	}
	body := strings.Join(lines, "\n") + "\n"
	return b.chat.Upload(ctx, channel, ts, File{
		Name: host + "-console.txt", Title: "Serial console of " + host,
		Size: int64(len(body)), Lines: int64(len(lines)),
		Open: func(context.Context) (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil },
	})
}

// holdHost marks host as taken by a power operation until release, so
// no deployment starts on it meanwhile and no second operation either:
// busy hosts are the lifecycle's to know.
func (b *Bot) holdHost(host, what string) (release func(), err error) {
	release, err = b.life.Hold([]string{host}, what)
	if err != nil {
		return nil, b.word(Result{Err: err})
	}
	return release, nil
}
