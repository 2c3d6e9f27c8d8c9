package bot

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// markerRE matches nixos-anywhere's progress lines: "### Installing NixOS ###".

// finalAttempts bounds the tries to deliver the final status message; each
// try already waits out 429s inside the Chat.
const finalAttempts = 5

// Streamer is a deployment's Sink: it keeps the newest lines and the
// progress in memory (bounded, whatever the log size) and updates the
// deployment's one status message at most once per interval. Slack is only
// ever called from its own goroutine, so a slow or rate-limited Slack never
// slows the deployment down.
type Streamer struct {
	b          *Bot
	dep        nixdeploy.Deployment
	channel    string
	ts         string
	approvedBy string
	started    time.Time
	// boot says, for an install, what the hosts need at boot.
	boot string

	mu     sync.Mutex
	tail   []string // ring of the newest b.tail lines
	next   int
	lines  int64
	host   string
	step   string
	marker string
	phase  int

	kick chan struct{}
	// live is the channel's shared progress board, joined at the start.
	live *liveBoard
}

func newStreamer(b *Bot, dep nixdeploy.Deployment, channel, approvedBy string) *Streamer {
	st := &Streamer{
		b: b, dep: dep, channel: channel, approvedBy: approvedBy,
		started: b.clock.Now(), phase: -1,
		tail: make([]string, 0, b.tailLines),
		kick: make(chan struct{}, 1),
	}
	if dep.Action == nixdeploy.ActionInstall {
		var notes []string
		for _, name := range dep.Hosts {
			if h, ok := b.Config().Host(name); ok {
				notes = append(notes, name+": "+h.BootNote())
			}
		}
		st.boot = strings.Join(notes, "; ")
	}
	return st
}

// Line implements Sink.
func (s *Streamer) Line(l nixdeploy.LogLine) { s.Lines([]nixdeploy.LogLine{l}) }

// Lines takes several lines at once (the deployer's BatchSink), under one
// lock: every line of a deployment passes here.
func (s *Streamer) Lines(ls []nixdeploy.LogLine) {
	if len(ls) == 0 {
		return
	}
	s.mu.Lock()
	s.lines += int64(len(ls))
	for i := range ls {
		l := &ls[i]
		if l.Host != "" {
			s.host = l.Host
		}
		if l.Step != "" {
			s.step = l.Step
		}
		if m, ok := l.Phase(); ok {
			s.marker = m
			if p := phaseOf(m); p >= 0 && p >= s.phase {
				s.phase = p
			}
		}
	}
	// Only the newest lines can stay in the tail.
	if c := cap(s.tail); len(ls) > c {
		ls = ls[len(ls)-c:]
	}
	for i := range ls {
		if len(s.tail) < cap(s.tail) {
			s.tail = append(s.tail, ls[i].Text)
		} else if cap(s.tail) > 0 {
			s.tail[s.next] = ls[i].Text
			s.next = (s.next + 1) % cap(s.tail)
		}
	}
	s.mu.Unlock()
	s.wake()
}

// wake makes the updater look at the message again.
func (s *Streamer) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Streamer) snapshot() snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	tail := make([]string, 0, len(s.tail))
	tail = append(tail, s.tail[s.next:]...)
	tail = append(tail, s.tail[:s.next]...)
	return snapshot{
		dep: s.dep, approvedBy: s.approvedBy, elapsed: s.b.clock.Now().Sub(s.started),
		host: s.host, step: s.step, marker: s.marker, phase: s.phase, lines: s.lines, tail: tail, boot: s.boot,
	}
}

// post creates the status message, unless the channel is crowded: then
// the deployment's progress is on the channel's live board, and its own
// message is posted when it ends. A failure is
// logged, not fatal: the deployment runs anyway and the final message is
// then posted new.
func (s *Streamer) post(ctx context.Context) {
	s.live = s.b.liveFor(s.channel)
	if s.live.join(s) {
		return
	}
	ts, err := s.b.chat.Post(ctx, s.channel, runningMessage(s.snapshot()))
	if err != nil {
		s.b.log.Error("post status message", "deployment", s.dep.ID, "err", err)
		return
	}
	s.ts = ts
	if err := s.b.life.Shown(ctx, s.dep.ID, s.channel, ts); err != nil {
		s.b.log.Error("record status message", "deployment", s.dep.ID, "err", err)
	}
}

// resume carries on the status message ts a deployment already has (one
// this process reattached after a restart), instead of posting one.
func (s *Streamer) resume(ts string) {
	s.live = s.b.liveFor(s.channel)
	s.live.join(s)
	s.ts = ts
}

// updates runs until done is closed: each wake-up after new lines becomes
// one chat.update, started no sooner than interval after the previous one
// (or the post, at last).
func (s *Streamer) updates(ctx context.Context, last time.Time, done <-chan struct{}) {
	for {
		select {
		case <-s.kick:
		case <-done:
			return
		}
		if wait := last.Add(s.b.interval).Sub(s.b.clock.Now()); wait > 0 {
			fired := make(chan struct{})
			stop := s.b.clock.AfterFunc(wait, func() { close(fired) })
			select {
			case <-fired:
			case <-done:
				stop()
				return
			}
		}
		if s.live != nil && s.live.crowded() {
			// Progress is on the channel's live board for now.
			s.live.poke()
			continue
		}
		if s.ts == "" {
			last = s.b.clock.Now()
			continue
		}
		// The shared budget decides when, behind the calls that must
		// happen; the deployment's end stops the wait.
		if err := s.waitBudget(ctx, done); err != nil {
			return
		}
		last = s.b.clock.Now()
		if err := s.b.rawChat.Update(ctx, s.channel, s.ts, runningMessage(s.snapshot())); err != nil {
			s.b.log.Warn("update status message", "deployment", s.dep.ID, "err", err)
		}
	}
}

// waitBudget takes a progress update's share of the Slack budget, or
// gives up when done is closed.
func (s *Streamer) waitBudget(ctx context.Context, done <-chan struct{}) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return s.b.budget.wait(ctx, "chat.update", s.channel, false)
}

// finish delivers the final message, retrying with backoff, and uploads
// the complete log into its thread. When the status message cannot be
// updated (deleted, say) the last attempts post the final message anew.
func (s *Streamer) finish(ctx context.Context, res Result, cancelledBy string) {
	if s.live != nil {
		s.live.leave(s)
	}
	msg := finalMessage(s.snapshot(), res, cancelledBy)
	var err error
	for attempt := 1; attempt <= finalAttempts; attempt++ {
		if s.ts != "" && attempt <= finalAttempts-2 {
			err = s.b.chat.Update(ctx, s.channel, s.ts, msg)
		} else {
			var ts string
			if ts, err = s.b.chat.Post(ctx, s.channel, msg); err == nil {
				s.ts = ts
				if err := s.b.life.Shown(ctx, s.dep.ID, s.channel, ts); err != nil {
					s.b.log.Error("record status message", "deployment", s.dep.ID, "err", err)
				}
			}
		}
		if err == nil || ctx.Err() != nil {
			break
		}
		s.b.log.Warn("deliver final message", "deployment", s.dep.ID, "attempt", attempt, "err", err)
		if sleep(ctx, s.b.clock, time.Duration(1<<attempt)*time.Second) != nil {
			break
		}
	}
	if err != nil {
		s.b.log.Error("final message lost", "deployment", s.dep.ID, "err", err)
		return
	}
	if err := s.upload(ctx); err != nil {
		s.b.log.Error("upload log", "deployment", s.dep.ID, "err", err)
	}
}

// upload shares the complete log, read back from the store, in the status
// message's thread. The log is streamed twice (once to size it, once to
// send it), so memory stays bounded whatever its length.
func (s *Streamer) upload(ctx context.Context) error {
	var size, lines int64
	var f logFormat
	var scratch []byte
	err := s.b.store.EachLog(ctx, s.dep.ID, func(l nixdeploy.LogLine) error {
		scratch = f.append(scratch[:0], l)
		size += int64(len(scratch))
		lines++
		return nil
	})
	if err != nil {
		return err
	}
	const empty = "(no output was recorded)\n"
	if lines == 0 {
		size = int64(len(empty))
	}
	file := File{
		Name:  fmt.Sprintf("nixdeploy-%d-%s.log", s.dep.ID, s.dep.Action),
		Title: fmt.Sprintf("Log of %s (%s)", title(s.dep), lineCount(lines)),
		Size:  size,
		Lines: lines,
		Open: func(ctx context.Context) (io.ReadCloser, error) {
			pr, pw := io.Pipe()
			go func() {
				if lines == 0 {
					_, err := io.WriteString(pw, empty)
					pw.CloseWithError(err)
					return
				}
				// Whole buffers through the pipe, not lines: each write
				// waits for the reader.
				w := bufio.NewWriterSize(pw, 64<<10)
				var f logFormat
				var buf []byte
				err := s.b.store.EachLog(ctx, s.dep.ID, func(l nixdeploy.LogLine) error {
					buf = f.append(buf[:0], l)
					_, err := w.Write(buf)
					return err
				})
				if err == nil {
					err = w.Flush()
				}
				pw.CloseWithError(err)
			}()
			return pr, nil
		},
	}
	return s.b.chat.Upload(ctx, s.channel, s.ts, file)
}

// LogFileLine is one line of the uploaded log file, newline included:
// UTC time with milliseconds, host, step, stream and the text.
func LogFileLine(l nixdeploy.LogLine) string {
	var f logFormat
	return string(f.append(nil, l))
}

// logFormat formats lines of the uploaded log. Formatting a time is most
// of the cost of a line, and consecutive lines mostly share their second,
// so it keeps the formatted second of the previous line.
type logFormat struct {
	sec    int64
	prefix []byte // "2006-01-02T15:04:05" of sec, or empty
}

func (f *logFormat) append(dst []byte, l nixdeploy.LogLine) []byte {
	t := l.Time.UTC()
	if sec := t.Unix(); len(f.prefix) == 0 || sec != f.sec {
		f.prefix = t.AppendFormat(f.prefix[:0], "2006-01-02T15:04:05")
		f.sec = sec
	}
	dst = append(dst, f.prefix...)
	// Like the layout's ".000": milliseconds, truncated.
	ms := t.Nanosecond() / int(time.Millisecond)
	dst = append(dst, '.', byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z', ' ')
	host, step := l.Host, l.Step
	if host == "" {
		host = "-"
	}
	if step == "" {
		step = "-"
	}
	dst = append(dst, host...)
	dst = append(dst, ' ')
	dst = append(dst, step...)
	dst = append(dst, ' ')
	dst = append(dst, l.Stream...)
	dst = append(dst, ':', ' ')
	dst = append(dst, l.Text...)
	return append(dst, '\n')
}
