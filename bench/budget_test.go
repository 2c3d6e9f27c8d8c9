package bench_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/bot"
	"github.com/nixdeploy/nixdeploy/db"
	"github.com/nixdeploy/nixdeploy/internal/slackfake"
)

// slackTiers are Slack's limits as the fake enforces them in row 7:
// chat.update and reactions.add are Tier 3 (about 50 a minute), and
// chat.postMessage about one a second in a channel (REFERENCE.md).
var slackTiers = map[string]int{"chat.update": 50, "reactions.add": 50, "chat.postMessage": 60}

// streamFor and lineEvery shape each deployment of row 7: a line every
// 100 ms for 10 s, as a steady build would print.
const (
	streamFor = 10 * time.Second
	lineEvery = 100 * time.Millisecond
)

// emitted records when each deployment printed each line.
type emitted struct {
	mu sync.Mutex
	at map[int64][]time.Time // deployment id → time of line i+1
}

// streamingDeployer prints "line N" every lineEvery for streamFor, stores
// the lines as a deployer must, and succeeds.
type streamingDeployer struct {
	store *db.DB
	out   *emitted
}

func (d streamingDeployer) Run(ctx context.Context, dep *nixdeploy.Deployment, sinks ...nixdeploy.Sink) (*nixdeploy.Report, error) {
	sink := sinks[0]
	tick := time.NewTicker(lineEvery)
	defer tick.Stop()
	end := time.Now().Add(streamFor)
	var lines []nixdeploy.LogLine
	for n := int64(1); time.Now().Before(end); n++ {
		select {
		case <-ctx.Done():
			return &nixdeploy.Report{State: nixdeploy.StateCancelled}, ctx.Err()
		case <-tick.C:
		}
		l := nixdeploy.LogLine{Seq: n, Time: time.Now(), Host: dep.Hosts[0], Step: "switch", Stream: nixdeploy.StreamStdout, Text: fmt.Sprintf("line %d", n)}
		d.out.mu.Lock()
		d.out.at[dep.ID] = append(d.out.at[dep.ID], l.Time)
		d.out.mu.Unlock()
		lines = append(lines, l)
		sink.Line(l)
	}
	if err := d.store.AppendLogs(context.WithoutCancel(ctx), dep.ID, lines); err != nil {
		return &nixdeploy.Report{State: nixdeploy.StateFailed}, err
	}
	return &nixdeploy.Report{State: nixdeploy.StateSucceeded}, nil
}

// fleetOf is a config with k hosts, never contacted: the deployer is fake.
func fleetOf(b *testing.B, k int) *nixdeploy.Config {
	b.Helper()
	var t strings.Builder
	t.WriteString("flake = \"/f\"\ninstaller_flake = \"/f/nixos-installer\"\n[runner]\naddress = \"b@runner.invalid:22\"\nhost_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGTrdkayN6vx4WZslAz+0maaFv3awOTiXbI87EfzNhUW r\"\n")
	t.WriteString(labSlack)
	for i := 1; i <= k; i++ {
		fmt.Fprintf(&t, "[[hosts]]\nname = \"node%02d\"\naddress = \"192.0.2.%d\"\nsystem = \"x86_64-linux\"\ndisk = \"/dev/sda\"\n", i, i)
	}
	cfg, err := nixdeploy.ParseConfig(filepath.Join(b.TempDir(), "nixdeploy.toml"), []byte(t.String()))
	if err != nil {
		b.Fatal(err)
	}
	return cfg
}

var shownRE = regexp.MustCompile(`line (\d+)`)

// BenchmarkRow7ConcurrentStreams runs K = 1, 4 and 16 deployments at once
// through the bot, each printing a line every 100 ms for 10 s, against a
// fake Slack that enforces Slack's per-minute limits with 429s. It reports
// the Slack calls per minute per method against the limit, the time from a
// line on the runner to a channel message showing it (or a later line),
// p50 and p99, and the 429s received. The goal is no 429 and a p99 under
// 3 s.
func BenchmarkRow7ConcurrentStreams(b *testing.B) {
	ks := []int{1, 4, 16}
	s := samples{}
	for b.Loop() {
		for _, k := range ks {
			run7(b, k, s)
		}
	}
	s.enough(b, "p99-1")
	var ours []string
	ok := true
	for _, k := range ks {
		ours = append(ours, fmt.Sprintf("K=%d: update %s/min, post %s/min, p50 %s s, p99 %s s, 429s %s",
			k, s.dist(fmt.Sprint("update-", k)), s.dist(fmt.Sprint("post-", k)),
			s.dist(fmt.Sprint("p50-", k)), s.dist(fmt.Sprint("p99-", k)), s.dist(fmt.Sprint("429-", k))))
		ok = ok && s.dist(fmt.Sprint("429-", k)).max == 0 && s.dist(fmt.Sprint("p99-", k)).med < 3
	}
	row{
		n:    7,
		what: "K deployments streaming at once through one bot: Slack calls per minute, line→channel latency, 429s",
		ours: strings.Join(ours, "; "),
		ref:  "Slack: chat.update 50/min (Tier 3), chat.postMessage 60/min in a channel",
		res:  "the shared budget keeps every method under its limit; from K = 2 in a channel, progress is on one shared live board",
		goal: "no 429; p99 < 3 s",
		met:  mark(ok),
	}.write(b)
}

func run7(b *testing.B, k int, s samples) {
	b.Helper()
	cfg := fleetOf(b, k)
	store, _, err := db.Open(context.Background(), filepath.Join(b.TempDir(), "nixdeploy.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	fake := slackfake.New(slackfake.Options{BotToken: benchToken, PerMinute: slackTiers})
	defer fake.Close()
	quiet := slog.New(slog.DiscardHandler)
	out := &emitted{at: map[int64][]time.Time{}}
	api := slack.New(benchToken, slack.OptionAPIURL(fake.APIURL()))
	bt, err := bot.New(bot.Options{
		Config: cfg, Store: store, Deployer: streamingDeployer{store: store, out: out}, Logger: quiet, BotUser: slackfake.BotUserID,
		Chat: bot.NewSlackChat(api, bot.SlackChatOptions{Logger: quiet}), Handlers: 32,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer bt.Close()
	if err := bt.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(bt.HTTPHandler(benchSecret))
	defer srv.Close()
	send := &slackfake.Sender{BaseURL: srv.URL, Secret: benchSecret, Client: &http.Client{}}
	start := time.Now()
	for i := 1; i <= k; i++ {
		if r, err := send.Slash(b.Context(), slackfake.SlashCommand{UserID: alice, ChannelID: benchChannel, Text: fmt.Sprintf("switch node%02d", i)}); err != nil || r.Status != 200 {
			b.Fatalf("slash: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := bt.Wait(ctx); err != nil {
		b.Fatal(err)
	}
	minutes := time.Since(start).Minutes()

	// Calls per minute per method, and 429s.
	counts := map[string]int{}
	limited := 0
	for _, c := range fake.Calls() {
		counts[c.Method]++
		if c.Status == http.StatusTooManyRequests {
			limited++
		}
	}
	s.add(fmt.Sprint("update-", k), float64(counts["chat.update"])/minutes)
	s.add(fmt.Sprint("post-", k), float64(counts["chat.postMessage"])/minutes)
	s.add(fmt.Sprint("429-", k), float64(limited))

	// Latency: for each printed line, the first version of a message
	// that shows it or a later line: its deployment's own message, or the
	// channel's live board (bot/live.go), where progress goes while
	// several deployments stream in one channel.
	var boards []slackfake.Message
	for _, m := range fake.Messages() {
		if len(m.Versions) > 0 && strings.Contains(m.Versions[0], "Live progress") {
			boards = append(boards, m)
		}
	}
	var lat []float64
	for id := int64(1); id <= int64(k); id++ {
		dep, err := store.Deployment(context.Background(), id)
		if err != nil {
			b.Fatal(err)
		}
		m, ok := fake.Message(dep.Channel, dep.MessageTS)
		if !ok {
			b.Fatalf("deployment %d has no message", id)
		}
		out.mu.Lock()
		at := out.at[id]
		out.mu.Unlock()
		for n, t := range at {
			first, shown := firstShown(m, id, n+1, t, false)
			for _, bm := range boards {
				if f, ok := firstShown(bm, id, n+1, t, true); ok && (!shown || f.Before(first)) {
					first, shown = f, true
				}
			}
			if !shown {
				b.Fatalf("deployment %d: line %d never shown", id, n+1)
			}
			lat = append(lat, first.Sub(t).Seconds())
		}
	}
	s.add(fmt.Sprint("p50-", k), pct(lat, 50))
	s.add(fmt.Sprint("p99-", k), pct(lat, 99))
	b.Logf("K=%d: %.1f min, calls %v, 429s %d, p50 %.2f s, p99 %.2f s", k, minutes, counts, limited, pct(lat, 50), pct(lat, 99))
}

// firstShown is when m first showed deployment id's line n or a later
// one, at or after t. On a live board only id's own section counts.
func firstShown(m slackfake.Message, id int64, n int, t time.Time, board bool) (time.Time, bool) {
	for v, text := range m.Versions {
		if m.Times[v].Before(t) {
			continue
		}
		if board {
			text = sectionOf(text, id)
		}
		if highest(text) >= n {
			return m.Times[v], true
		}
	}
	return time.Time{}, false
}

// sectionOf is deployment id's part of a live board: from its title
// ("*#id …*") to the next deployment's.
func sectionOf(text string, id int64) string {
	i := strings.Index(text, fmt.Sprintf("*#%d ", id))
	if i < 0 {
		return ""
	}
	rest := text[i+1:]
	if j := strings.Index(rest, "*#"); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

// highest is the highest "line N" a message version shows.
func highest(text string) int {
	best := 0
	for _, m := range shownRE.FindAllStringSubmatch(text, -1) {
		if n, err := strconv.Atoi(m[1]); err == nil && n > best {
			best = n
		}
	}
	return best
}
