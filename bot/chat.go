package bot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/slack-go/slack"
)

// MessageKind says what a message is for. Slack ignores it; the terminal
// uses it to know which message a typed reaction refers to.
type MessageKind string

// Message kinds.
const (
	KindStatus   MessageKind = "status"
	KindApproval MessageKind = "approval"
	KindReply    MessageKind = "reply"
	KindNotice   MessageKind = "notice"
)

// Slack's limits, with some headroom.
const (
	// MaxText bounds a message's top-level text (Slack advises ~4000).
	MaxText = 3900
	// MaxSection bounds one section block's text (Slack: 3000).
	MaxSection = 3000
	// maxSections keeps well inside Slack's 50 blocks per message.
	maxSections = 20
)

// Message is one chat message in Slack mrkdwn. Text is the summary Slack
// shows in notifications; Sections, when present, are the body.
type Message struct {
	Kind     MessageKind
	Text     string
	Sections []string
	// Table, when set, follows the sections as a Block Kit table block
	// (an aligned text table in the terminal); its first row is the
	// header. Cells are plain text.
	Table [][]string
}

// File is a file to upload. Open is called once per attempt and returns
// the content, which must be exactly Size bytes.
type File struct {
	Name  string
	Title string
	Size  int64
	Lines int64
	Open  func(ctx context.Context) (io.ReadCloser, error)
}

// Chat is where the bot talks: the Slack Web API, or a terminal. The
// approval and streaming logic is written once against it.
type Chat interface {
	// Post posts m to channel and returns its ts.
	Post(ctx context.Context, channel string, m Message) (ts string, err error)
	// Update replaces the message at channel, ts.
	Update(ctx context.Context, channel, ts string, m Message) error
	// Ephemeral shows m to user only.
	Ephemeral(ctx context.Context, channel, user string, m Message) error
	// React adds the reaction name to the message at channel, ts.
	React(ctx context.Context, channel, ts, name string) error
	// Upload shares f in the thread of the message at channel, threadTS.
	Upload(ctx context.Context, channel, threadTS string, f File) error
}

// SlackChatOptions configure a SlackChat.
type SlackChatOptions struct {
	// Clock times Retry-After waits; default RealClock.
	Clock Clock
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Attempts bounds the tries of one call through 429s; default 5.
	Attempts int
}

// SlackChat is Chat over the Slack Web API.
type SlackChat struct {
	api      *slack.Client
	clock    Clock
	log      *slog.Logger
	attempts int
}

// NewSlackChat wraps a slack-go client.
func NewSlackChat(api *slack.Client, o SlackChatOptions) *SlackChat {
	c := &SlackChat{api: api, clock: o.Clock, log: o.Logger, attempts: o.Attempts}
	if c.clock == nil {
		c.clock = RealClock{}
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.attempts <= 0 {
		c.attempts = 5
	}
	return c
}

// retry runs call until it succeeds, fails with anything but a 429, or
// has been tried c.attempts times; each 429 waits its Retry-After.
func (c *SlackChat) retry(ctx context.Context, method string, call func() error) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = call()
		var rl *slack.RateLimitedError
		if !errors.As(err, &rl) {
			break
		}
		if attempt >= c.attempts {
			break
		}
		wait := max(rl.RetryAfter, time.Second)
		c.log.Warn("slack rate limit", "method", method, "retry_after", wait, "attempt", attempt)
		if err := sleep(ctx, c.clock, wait); err != nil {
			return fmt.Errorf("%s: wait out rate limit: %w", method, err)
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	return nil
}

func msgOptions(m Message) []slack.MsgOption {
	text := clip(m.Text, MaxText)
	opts := []slack.MsgOption{slack.MsgOptionText(text, false)}
	if blocks := sectionBlocks(m); len(blocks) > 0 {
		opts = append(opts, slack.MsgOptionBlocks(blocks...))
	}
	return opts
}

// Post implements Chat.
func (c *SlackChat) Post(ctx context.Context, channel string, m Message) (string, error) {
	var ts string
	err := c.retry(ctx, "chat.postMessage", func() error {
		var err error
		_, ts, err = c.api.PostMessageContext(ctx, channel, msgOptions(m)...)
		return err
	})
	return ts, err
}

// Update implements Chat.
func (c *SlackChat) Update(ctx context.Context, channel, ts string, m Message) error {
	return c.retry(ctx, "chat.update", func() error {
		_, _, _, err := c.api.UpdateMessageContext(ctx, channel, ts, msgOptions(m)...)
		return err
	})
}

// Ephemeral implements Chat.
func (c *SlackChat) Ephemeral(ctx context.Context, channel, user string, m Message) error {
	return c.retry(ctx, "chat.postEphemeral", func() error {
		_, err := c.api.PostEphemeralContext(ctx, channel, user, msgOptions(m)...)
		return err
	})
}

// React implements Chat.
func (c *SlackChat) React(ctx context.Context, channel, ts, name string) error {
	return c.retry(ctx, "reactions.add", func() error {
		err := c.api.AddReactionContext(ctx, name, slack.NewRefToMessage(channel, ts))
		if err != nil && err.Error() == "already_reacted" {
			return nil
		}
		return err
	})
}

// Upload implements Chat with slack-go's three-step upload
// (files.getUploadURLExternal, the POST, files.completeUploadExternal).
func (c *SlackChat) Upload(ctx context.Context, channel, threadTS string, f File) error {
	if f.Size <= 0 {
		return fmt.Errorf("upload %s: empty file", f.Name)
	}
	return c.retry(ctx, "files.upload", func() error {
		r, err := f.Open(ctx)
		if err != nil {
			return err
		}
		defer r.Close()
		_, err = c.api.UploadFileContext(ctx, slack.UploadFileParameters{
			Reader:          r,
			FileSize:        int(f.Size),
			Filename:        f.Name,
			Title:           f.Title,
			Channel:         channel,
			ThreadTimestamp: threadTS,
		})
		return err
	})
}

// sectionBlocks renders m's non-empty sections as Block Kit section
// blocks, each clipped to Slack's limit, at most maxSections of them.
func sectionBlocks(m Message) []slack.Block {
	var blocks []slack.Block
	for _, s := range m.Sections {
		if s == "" || len(blocks) == maxSections {
			continue
		}
		blocks = append(blocks, slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, clip(s, MaxSection), false, false), nil, nil))
	}
	if len(m.Table) > 0 {
		blocks = append(blocks, tableBlock(m.Table))
	}
	return blocks
}
