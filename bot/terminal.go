package bot

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// Terminal is Chat on a terminal: every post, update, ephemeral reply,
// reaction and upload is printed as text. It is the operator's fallback
// when Slack is down and a simple driver for tests and demos.
type Terminal struct {
	mu sync.Mutex
	w  io.Writer
	// ts values count up from the start time in microseconds, like
	// Slack's, so a message of this session can never be mistaken for
	// one an earlier session stored.
	base int64
	seq  int64
	// lastApproval is the newest approval message, the one a typed
	// reaction applies to.
	lastChannel, lastTS string
}

// NewTerminal prints to w.
func NewTerminal(w io.Writer) *Terminal { return &Terminal{w: w, base: time.Now().UnixMicro()} }

var mentionRE = regexp.MustCompile(`<@([A-Z0-9]+)>`)

var unescaper = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&")

// plain turns mrkdwn into terminal text.
func plain(s string) string {
	return unescaper.Replace(mentionRE.ReplaceAllString(s, "@$1"))
}

func (t *Terminal) print(header string, m Message) {
	var b strings.Builder
	b.WriteString(header)
	if len(m.Sections) == 0 {
		b.WriteString(" " + plain(m.Text) + "\n")
	} else {
		b.WriteString("\n")
		for _, s := range m.Sections {
			for _, l := range strings.Split(plain(s), "\n") {
				b.WriteString("  " + l + "\n")
			}
		}
	}
	if len(m.Table) > 0 {
		for _, l := range strings.Split(strings.TrimRight(nixdeploy.AlignColumns(m.Table), "\n"), "\n") {
			b.WriteString("  " + l + "\n")
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	io.WriteString(t.w, b.String())
}

// Post implements Chat.
func (t *Terminal) Post(_ context.Context, channel string, m Message) (string, error) {
	t.mu.Lock()
	t.seq++
	v := t.base + t.seq
	ts := fmt.Sprintf("%d.%06d", v/1e6, v%1e6)
	if m.Kind == KindApproval {
		t.lastChannel, t.lastTS = channel, ts
	}
	t.mu.Unlock()
	t.print(fmt.Sprintf("[%s %s]", channel, ts), m)
	return ts, nil
}

// Update implements Chat.
func (t *Terminal) Update(_ context.Context, channel, ts string, m Message) error {
	t.print(fmt.Sprintf("[%s %s updated]", channel, ts), m)
	return nil
}

// Ephemeral implements Chat.
func (t *Terminal) Ephemeral(_ context.Context, channel, user string, m Message) error {
	t.print(fmt.Sprintf("[%s only @%s]", channel, user), m)
	return nil
}

// React implements Chat. The bot reacts only to seed the vote buttons of
// an approval message, so the line says so: a bare "+:white_check_mark:"
// read as if someone had approved.
func (t *Terminal) React(_ context.Context, channel, ts, name string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.w, "[%s %s] nixdeploy seeded :%s: for one-click voting (not a vote)\n", channel, ts, name)
	return nil
}

// Upload implements Chat: the file is read in full (proving it is
// complete) and summarised.
func (t *Terminal) Upload(ctx context.Context, channel, threadTS string, f File) error {
	r, err := f.Open(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	n, err := io.Copy(io.Discard, r)
	if err != nil {
		return fmt.Errorf("read %s: %w", f.Name, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.w, "[%s %s thread] file %s (%s, %d bytes)\n", channel, threadTS, f.Name, lineCount(f.Lines), n)
	return nil
}

// SetLastApproval makes the message at channel, ts the one a typed
// reaction applies to, such as an approval still pending from an earlier
// session.
func (t *Terminal) SetLastApproval(channel, ts string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lastChannel, t.lastTS = channel, ts
}

// LastApproval is the newest approval message posted, if any.
func (t *Terminal) LastApproval() (channel, ts string, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lastChannel, t.lastTS, t.lastTS != ""
}

// reactionLineRE is ":name: as USER", or ":name:" for the current user.
var reactionLineRE = regexp.MustCompile(`^:([a-z0-9_+\-]+):(?:\s+as\s+(\S+))?$`)

// ParseReactionLine reads a typed reaction; ok is false for other text.
func ParseReactionLine(line string) (name, user string, ok bool) {
	m := reactionLineRE.FindStringSubmatch(strings.TrimSpace(line))
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// ReadLines reads in line by line on its own goroutine, so that ctx can end
// a reader blocked on input. lines closes at EOF or when ctx ends; then
// errc holds the read error (nil at a clean EOF) or ctx's error.
func ReadLines(ctx context.Context, in io.Reader) (lines <-chan string, errc <-chan error) {
	out := make(chan string)
	errs := make(chan error, 1)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			select {
			case out <- sc.Text():
			case <-ctx.Done():
				errs <- ctx.Err()
				return
			}
		}
		errs <- sc.Err()
	}()
	return out, errs
}

// Console drives a Bot from lines of text, as a terminal user types them:
// "/nixdeploy …" issues a command as the current user, ":name: as USER"
// reacts to the newest approval message, "as USER" switches the current
// user. After each line it waits until the bot has settled, so output is
// in order. It returns at EOF or "quit".
func Console(ctx context.Context, b *Bot, t *Terminal, in io.Reader, out io.Writer, user, channel string) error {
	lines, readErr := ReadLines(ctx, in)
	say := func(format string, args ...any) {
		t.mu.Lock()
		defer t.mu.Unlock()
		fmt.Fprintf(out, format+"\n", args...)
	}
	for {
		var line string
		var ok bool
		select {
		case line, ok = <-lines:
		case <-ctx.Done():
			return ctx.Err()
		}
		if !ok {
			break
		}
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			continue
		case line == "quit" || line == "exit":
			return b.Wait(ctx)
		case strings.HasPrefix(line, "as "):
			user = strings.TrimSpace(strings.TrimPrefix(line, "as "))
			say("> now acting as @%s", user)
			continue
		case strings.HasPrefix(line, "/"):
			text := line
			if f := strings.Fields(line); len(f) > 0 && f[0] != "/nixdeploy" {
				say("> unknown slash command %s; type /nixdeploy help", f[0])
				continue
			}
			rep := b.Command(Invocation{User: user, Channel: channel, Text: text})
			say("> @%s: %s", user, plain(rep.Text))
		default:
			name, as, isReaction := ParseReactionLine(line)
			if !isReaction {
				say("> type /nixdeploy COMMAND, :reaction: as USER, as USER, or quit")
				continue
			}
			if as == "" {
				as = user
			}
			ch, ts, have := t.LastApproval()
			if !have {
				say("> there is no approval message to react to")
				continue
			}
			say("> @%s reacted :%s: to %s", as, name, ts)
			b.React(Reaction{User: as, Name: name, Channel: ch, TS: ts})
		}
		if err := b.Wait(ctx); err != nil {
			return err
		}
	}
	if err := <-readErr; err != nil {
		return fmt.Errorf("read commands: %w", err)
	}
	return b.Wait(ctx)
}
