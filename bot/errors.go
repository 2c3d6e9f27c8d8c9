package bot

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/slack-go/slack"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/commands"
)

// userError is an error whose message was written for the user: one
// sentence that says what to do next. It still matches its sentinel.
type userError struct {
	msg      string
	sentinel error
}

func (e *userError) Error() string { return e.msg }
func (e *userError) Unwrap() error { return e.sentinel }

// userf builds a userError matching sentinel.
func userf(sentinel error, format string, args ...any) error {
	return &userError{msg: fmt.Sprintf(format, args...), sentinel: sentinel}
}

// maxUserMessage bounds a sentence so it fits any Slack field.
const maxUserMessage = 500

// UserMessage is the one place that turns an error into what a user reads:
// one sentence, no Go error chain, no file paths, nothing from the
// environment. Errors the bot or the command parser wrote for users pass
// through; everything else maps by sentinel to a fixed sentence, and the
// full error goes only to the log.
func UserMessage(err error) string {
	if err == nil {
		return ""
	}
	var msg string
	var ue *userError
	var um interface{ UserMessage() string }
	var rl *slack.RateLimitedError
	switch {
	case errors.As(err, &ue):
		msg = ue.msg
	case errors.As(err, &um):
		msg = um.UserMessage()
	case errors.Is(err, commands.ErrUsage):
		// The parser's messages are written for users, one sentence each.
		msg = err.Error()
	case errors.Is(err, nixdeploy.ErrHostBusy):
		msg = "that host is busy with another deployment or locked; see /nixdeploy status, then try again or cancel it"
	case errors.Is(err, nixdeploy.ErrUnknownHost):
		msg = "that host is not in the fleet config; see /nixdeploy status for the hosts"
	case errors.Is(err, nixdeploy.ErrUnauthorized):
		msg = "you are not allowed to do that; ask an admin to add you to the [slack] policy of the fleet config"
	case errors.Is(err, nixdeploy.ErrNotFound):
		msg = "that was not found; check the ID with /nixdeploy history"
	case errors.Is(err, nixdeploy.ErrInvalidInput):
		msg = "that request is not valid; see /nixdeploy help"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		msg = "nixdeploy stopped before this finished; try again once it is back"
	case errors.As(err, &rl):
		msg = "Slack is rate-limiting nixdeploy; try again in a minute"
	default:
		msg = "something went wrong inside nixdeploy; the details are in its log, ask an operator to look"
	}
	return oneLine(msg, maxUserMessage)
}

// oneLine collapses whitespace runs (newlines included) and cuts s to n
// bytes at a rune boundary.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	return clip(s, n)
}

// clip cuts s to at most n bytes without splitting a rune, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// UserError returns an error whose message users see as is: msg must be
// one sentence that says what happened and what to do next, with nothing
// secret in it. It wraps cause, for errors.Is and the log. Adapters use it
// to give the bot's users a better sentence than UserMessage's fallback.
func UserError(msg string, cause error) error {
	return &userError{msg: msg, sentinel: cause}
}
