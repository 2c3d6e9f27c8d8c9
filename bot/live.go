package bot

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Slack allows chat.update about 50 times a minute for the whole
// workspace (Tier 3), so K deployments that each update their own message
// share that: at K = 4 each message moved every ~5 s, at K = 16 every
// ~20 s (bench row 7, issue 15). When several deployments stream in one
// channel, their progress therefore moves to one shared message, the
// channel's live board, updated once per interval with the newest lines of
// every one of them, until none of them runs. A deployment that starts
// while the board is up joins it and posts no message of its own until it
// ends (Slack allows about one post a second in a channel: sixteen
// "running" posts would hold the board back for as long); its outcome,
// with its log in the thread, is always posted.
const (
	// liveThreshold is how many deployments streaming in one channel at
	// once move their progress to the live board.
	liveThreshold = 2
	// liveShown bounds the deployments the board lists (Slack allows 50
	// blocks a message); the rest are counted.
	liveShown = 20
	// liveTail is how many of each deployment's newest lines it shows.
	liveTail = 2
	// liveLineWidth bounds each shown line.
	liveLineWidth = 150
	// liveCloseTimeout bounds the board's last update.
	liveCloseTimeout = 2 * time.Minute
)

// liveBoard is a channel's shared progress message.
type liveBoard struct {
	b       *Bot
	channel string
	kick    chan struct{}

	mu      sync.Mutex
	members map[int64]*liveMember
	// active is set from the moment the channel is crowded until the
	// board's last update; while it is set the members do not update
	// their own messages, and new deployments in the channel join it.
	active bool
	ts     string
}

// liveMember is a deployment on the board. One that ended is shown once
// more, with its last lines, then dropped.
type liveMember struct {
	s     *Streamer
	ended bool
}

// liveFor returns channel's board, creating it.
func (b *Bot) liveFor(channel string) *liveBoard {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.live == nil {
		b.live = map[string]*liveBoard{}
	}
	lb := b.live[channel]
	if lb == nil {
		lb = &liveBoard{b: b, channel: channel, kick: make(chan struct{}, 1), members: map[int64]*liveMember{}}
		b.live[channel] = lb
	}
	return lb
}

// join adds a streaming deployment; the board starts once the channel is
// crowded. It reports whether the channel is crowded now.
func (lb *liveBoard) join(s *Streamer) bool {
	lb.mu.Lock()
	lb.members[s.dep.ID] = &liveMember{s: s}
	start := !lb.active && lb.runningLocked() >= liveThreshold
	if start {
		lb.active = true
	}
	lb.mu.Unlock()
	if start && !lb.b.spawn(lb.loop) {
		lb.mu.Lock()
		lb.active = false
		lb.mu.Unlock()
	}
	lb.poke()
	return lb.crowded()
}

// leave marks a deployment ended: an active board shows its last lines
// once more; otherwise it is dropped at once.
func (lb *liveBoard) leave(s *Streamer) {
	lb.mu.Lock()
	if m := lb.members[s.dep.ID]; m != nil {
		m.ended = true
		if !lb.active {
			delete(lb.members, s.dep.ID)
		}
	}
	lb.mu.Unlock()
	lb.poke()
}

func (lb *liveBoard) runningLocked() int {
	n := 0
	for _, m := range lb.members {
		if !m.ended {
			n++
		}
	}
	return n
}

// crowded reports whether members' progress goes to the board.
func (lb *liveBoard) crowded() bool {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return lb.active
}

func (lb *liveBoard) poke() {
	select {
	case lb.kick <- struct{}{}:
	default:
	}
}

// loop updates the board at most once per interval while any of its
// deployments runs, then shows their last lines once more, says it ended,
// and ends. A later crowd posts a new board, next to the deployments it
// is about.
func (lb *liveBoard) loop(ctx context.Context) {
	var last time.Time
	for {
		select {
		case <-lb.kick:
		case <-ctx.Done():
			lb.end(context.WithoutCancel(ctx))
			return
		}
		if wait := last.Add(lb.b.interval).Sub(lb.b.clock.Now()); wait > 0 {
			if sleep(ctx, lb.b.clock, wait) != nil {
				lb.end(context.WithoutCancel(ctx))
				return
			}
		}
		lb.mu.Lock()
		running, ts := lb.runningLocked(), lb.ts
		lb.mu.Unlock()
		if running == 0 {
			lb.end(ctx)
			return
		}
		if ts == "" {
			// The board's first post is urgent: without it the crowd
			// shows nothing.
			shown, ended := lb.snapshot()
			nts, err := lb.b.chat.Post(ctx, lb.channel, liveMessage(shown, lb.b.clock.Now(), false))
			if err != nil {
				lb.b.log.Warn("post live board", "channel", lb.channel, "err", err)
			} else {
				lb.shown(nts, ended)
			}
		} else {
			if err := lb.b.budget.wait(ctx, "chat.update", lb.channel, false); err != nil {
				lb.end(context.WithoutCancel(ctx))
				return
			}
			// The wait may have been long: show what is newest now.
			shown, ended := lb.snapshot()
			if err := lb.b.rawChat.Update(ctx, lb.channel, ts, liveMessage(shown, lb.b.clock.Now(), false)); err != nil {
				lb.b.log.Warn("update live board", "channel", lb.channel, "err", err)
			} else {
				lb.shown(ts, ended)
			}
		}
		last = lb.b.clock.Now()
	}
}

// shown records a delivered board: the ended deployments on it have had
// their last lines shown and go.
func (lb *liveBoard) shown(ts string, ended []int64) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	lb.ts = ts
	for _, id := range ended {
		delete(lb.members, id)
	}
}

// end closes the board with the last lines of the deployments still on
// it, and a header saying it ended.
func (lb *liveBoard) end(ctx context.Context) {
	shown, _ := lb.snapshot()
	lb.mu.Lock()
	ts := lb.ts
	lb.ts, lb.active = "", false
	for id, m := range lb.members {
		if m.ended {
			delete(lb.members, id)
		}
	}
	lb.mu.Unlock()
	if ts != "" {
		ctx, cancel := context.WithTimeout(ctx, liveCloseTimeout)
		defer cancel()
		if err := lb.b.chat.Update(ctx, lb.channel, ts, liveMessage(shown, lb.b.clock.Now(), true)); err != nil {
			lb.b.log.Warn("close live board", "channel", lb.channel, "err", err)
		}
	}
}

// liveShot is one deployment as the board shows it.
type liveShot struct {
	snapshot
	ended bool
}

// snapshot reads every member, oldest deployment first, and the ids of
// the ended ones.
func (lb *liveBoard) snapshot() ([]liveShot, []int64) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	out := make([]liveShot, 0, len(lb.members))
	var ended []int64
	for id, m := range lb.members {
		out = append(out, liveShot{snapshot: m.s.snapshot(), ended: m.ended})
		if m.ended {
			ended = append(ended, id)
		}
	}
	slices.SortFunc(out, func(a, b liveShot) int { return int(a.dep.ID - b.dep.ID) })
	return out, ended
}

// liveMessage renders the board: one section per deployment, its newest
// lines in a code block. closed renders the board's last version.
func liveMessage(shown []liveShot, now time.Time, closed bool) Message {
	running := 0
	for _, s := range shown {
		if !s.ended {
			running++
		}
	}
	m := Message{
		Kind: KindStatus,
		Text: fmt.Sprintf("%d deployments running in this channel", running),
		Sections: []string{fmt.Sprintf(":satellite_antenna: *Live progress* of the %d deployments running in this channel, as of %s. "+
			"Each deployment's outcome and log are posted when it ends.", running, utc(now))},
	}
	if closed {
		m.Text = "Live progress ended"
		m.Sections[0] = fmt.Sprintf(":satellite_antenna: *Live progress* ended at %s: no deployment that was on this board is running. "+
			"Each one's outcome and log are in its own message.", utc(now))
	}
	for i, s := range shown {
		if i == liveShown {
			m.Sections = append(m.Sections, fmt.Sprintf("… and %d more", len(shown)-liveShown))
			break
		}
		tail := s.tail
		if len(tail) > liveTail {
			tail = tail[len(tail)-liveTail:]
		}
		cut := make([]string, len(tail))
		for j, l := range tail {
			cut[j] = truncateRunes(l, liveLineWidth)
		}
		state := "running for " + human(s.elapsed)
		if s.ended {
			state = "ended after " + human(s.elapsed) + "; its outcome is in its own message"
		}
		if s.step != "" {
			state += ", step " + s.step
		}
		m.Sections = append(m.Sections, fmt.Sprintf("*%s* — %s\n%s", title(s.dep), state, codeBlock(cut, MaxSection/2)))
	}
	return m
}

// truncateRunes cuts s to at most n runes, marking the cut.
func truncateRunes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return strings.TrimRight(string(r[:n-1]), " ") + "…"
}
