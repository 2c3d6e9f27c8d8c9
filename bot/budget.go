package bot

import (
	"context"
	"sync"
	"time"
)

// Limit is the share of a Slack method the bot allows itself: PerMinute
// calls a minute on average, Burst at once. PerChannel limits each channel
// on its own, as Slack does for chat.postMessage; otherwise the limit is
// the workspace's, as for Tier 3 methods such as chat.update.
type Limit struct {
	PerMinute  float64
	Burst      float64
	PerChannel bool
}

// DefaultLimits stay under Slack's published limits with room to spare
// (REFERENCE.md; api.slack.com/apis/rate-limits): chat.update and
// reactions.add are Tier 3, about 50 a minute per workspace, and
// chat.postMessage is about one a second per channel, with short bursts.
// Methods not named here are not limited by the bot (ephemeral replies are
// Tier 4, uploads are rare).
var DefaultLimits = map[string]Limit{
	"chat.update":      {PerMinute: 40, Burst: 4},
	"reactions.add":    {PerMinute: 40, Burst: 4},
	"chat.postMessage": {PerMinute: 50, Burst: 3, PerChannel: true},
}

// budget is the one Slack rate budget of a bot, shared by every deployment,
// approval and summary, so the busiest case stays under Slack's limits
// instead of leaning on 429 retries (issue 15). Calls that must happen
// (posts, final messages, approvals, summaries) go first: a progress update
// only takes a call when no such call is waiting and one would be left.
type budget struct {
	clock  Clock
	limits map[string]Limit

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
	urgent int // urgent callers waiting
	perSec float64
	burst  float64
}

func newBudget(clock Clock, limits map[string]Limit) *budget {
	return &budget{clock: clock, limits: limits, buckets: map[string]*bucket{}}
}

// wait takes one call of method in channel, waiting as long as the budget
// says; urgent calls are served before progress updates. It returns
// ctx.Err() when ctx ends first.
func (r *budget) wait(ctx context.Context, method, channel string, urgent bool) error {
	l, ok := r.limits[method]
	if !ok || l.PerMinute <= 0 {
		return nil
	}
	key := method
	if l.PerChannel {
		key += "\x00" + channel
	}
	r.mu.Lock()
	b := r.buckets[key]
	if b == nil {
		b = &bucket{tokens: l.Burst, at: r.clock.Now(), perSec: l.PerMinute / 60, burst: max(l.Burst, 1)}
		r.buckets[key] = b
	}
	if urgent {
		b.urgent++
		defer func() { r.mu.Lock(); b.urgent--; r.mu.Unlock() }()
	}
	for {
		now := r.clock.Now()
		b.tokens = min(b.burst, b.tokens+now.Sub(b.at).Seconds()*b.perSec)
		b.at = now
		// A progress update leaves a call for every urgent caller.
		need := 1.0
		if !urgent {
			need += float64(b.urgent)
		}
		if b.tokens >= need {
			b.tokens--
			r.mu.Unlock()
			return nil
		}
		d := time.Duration((need - b.tokens) / b.perSec * float64(time.Second))
		r.mu.Unlock()
		if err := sleep(ctx, r.clock, max(d, time.Millisecond)); err != nil {
			return err
		}
		r.mu.Lock()
	}
}

// budgetChat is a Chat whose calls take their share of the budget first,
// as urgent calls: everything but the progress updates, which the
// Streamer makes through the budget itself.
type budgetChat struct {
	Chat
	budget *budget
}

func (c budgetChat) Post(ctx context.Context, channel string, m Message) (string, error) {
	if err := c.budget.wait(ctx, "chat.postMessage", channel, true); err != nil {
		return "", err
	}
	return c.Chat.Post(ctx, channel, m)
}

func (c budgetChat) Update(ctx context.Context, channel, ts string, m Message) error {
	if err := c.budget.wait(ctx, "chat.update", channel, true); err != nil {
		return err
	}
	return c.Chat.Update(ctx, channel, ts, m)
}

func (c budgetChat) React(ctx context.Context, channel, ts, name string) error {
	if err := c.budget.wait(ctx, "reactions.add", channel, true); err != nil {
		return err
	}
	return c.Chat.React(ctx, channel, ts, name)
}
