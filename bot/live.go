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
// every one of them. A deployment that starts in a crowded channel posts
// no message of its own until it ends (Slack allows about one post a
// second in a channel: sixteen "running" posts would hold the board back
// for as long); its outcome, with its log in the thread, is always posted.
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
)

// liveBoard is a channel's shared progress message.
type liveBoard struct {
	b       *Bot
	channel string
	kick    chan struct{}

	mu      sync.Mutex
	members map[int64]*Streamer
	// active is set from the moment the channel is crowded until the
	// board's last update; while it is set the members do not update
	// their own messages.
	active bool
	ts     string
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
		lb = &liveBoard{b: b, channel: channel, kick: make(chan struct{}, 1), members: map[int64]*Streamer{}}
		b.live[channel] = lb
	}
	return lb
}

// join adds a streaming deployment; the board starts once the channel is
// crowded. It reports whether the channel is crowded now.
func (lb *liveBoard) join(s *Streamer) bool {
	lb.mu.Lock()
	lb.members[s.dep.ID] = s
	start := !lb.active && len(lb.members) >= liveThreshold
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

// leave removes a deployment that ended.
func (lb *liveBoard) leave(s *Streamer) {
	lb.mu.Lock()
	delete(lb.members, s.dep.ID)
	lb.mu.Unlock()
	lb.poke()
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

// loop updates the board at most once per interval while the channel is
// crowded, then says so once and ends. A later crowd posts a new board,
// next to the deployments it is about.
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
		if len(lb.members) < liveThreshold {
			lb.mu.Unlock()
			lb.end(ctx)
			return
		}
		shown := lb.snapshotLocked()
		ts := lb.ts
		lb.mu.Unlock()
		msg := liveMessage(shown, lb.b.clock.Now())
		if ts == "" {
			// The board's first post is urgent: without it the crowd
			// shows nothing.
			nts, err := lb.b.chat.Post(ctx, lb.channel, msg)
			if err != nil {
				lb.b.log.Warn("post live board", "channel", lb.channel, "err", err)
			} else {
				lb.mu.Lock()
				lb.ts = nts
				lb.mu.Unlock()
			}
		} else {
			if err := lb.b.budget.wait(ctx, "chat.update", lb.channel, false); err != nil {
				lb.end(context.WithoutCancel(ctx))
				return
			}
			// The wait may have been long: show what is newest now.
			lb.mu.Lock()
			shown = lb.snapshotLocked()
			lb.mu.Unlock()
			if err := lb.b.rawChat.Update(ctx, lb.channel, ts, liveMessage(shown, lb.b.clock.Now())); err != nil {
				lb.b.log.Warn("update live board", "channel", lb.channel, "err", err)
			}
		}
		last = lb.b.clock.Now()
	}
}

// end closes the board: its message says progress is back on each
// deployment's own message, and the members left update their own again.
func (lb *liveBoard) end(ctx context.Context) {
	lb.mu.Lock()
	ts := lb.ts
	lb.ts, lb.active = "", false
	rest := make([]*Streamer, 0, len(lb.members))
	for _, s := range lb.members {
		rest = append(rest, s)
	}
	lb.mu.Unlock()
	if ts != "" {
		ctx, cancel := context.WithTimeout(ctx, finishTimeout)
		defer cancel()
		if err := lb.b.chat.Update(ctx, lb.channel, ts, liveEndedMessage()); err != nil {
			lb.b.log.Warn("close live board", "channel", lb.channel, "err", err)
		}
	}
	for _, s := range rest {
		s.wake()
	}
}

func (lb *liveBoard) snapshotLocked() []snapshot {
	out := make([]snapshot, 0, len(lb.members))
	for _, s := range lb.members {
		out = append(out, s.snapshot())
	}
	slices.SortFunc(out, func(a, b snapshot) int { return int(a.dep.ID - b.dep.ID) })
	return out
}

// liveMessage renders the board: one section per deployment, its newest
// lines in a code block.
func liveMessage(shown []snapshot, now time.Time) Message {
	m := Message{
		Kind: KindStatus,
		Text: fmt.Sprintf("%d deployments running in this channel", len(shown)),
		Sections: []string{fmt.Sprintf(":satellite_antenna: *Live progress* of the %d deployments running in this channel, as of %s. "+
			"Each deployment's outcome and log are posted when it ends.", len(shown), utc(now))},
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
		step := ""
		if s.step != "" {
			step = ", step " + s.step
		}
		m.Sections = append(m.Sections, fmt.Sprintf("*%s* — running for %s%s\n%s", title(s.dep), human(s.elapsed), step, codeBlock(cut, MaxSection/2)))
	}
	return m
}

func liveEndedMessage() Message {
	return Message{
		Kind:     KindStatus,
		Text:     "Live progress ended",
		Sections: []string{":satellite_antenna: *Live progress* ended: fewer deployments run in this channel now, and each one's own message shows its progress and outcome."},
	}
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
