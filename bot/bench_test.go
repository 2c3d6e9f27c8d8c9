package bot_test

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy/internal/slackfake"
)

// BenchmarkSlashAck measures the time from sending a signed slash command
// to its HTTP 200 ack, through the real handler and a real socket, with 1
// and 50 concurrent senders. The command's work (DB reads, an ephemeral
// reply to the fake Slack) runs in the background meanwhile, as in
// production. Reported: p50-ms and p99-ms; the goal is p99 < 10 ms.
var benchText = "status ganon"

func BenchmarkSlashAck(b *testing.B) {
	for _, senders := range []int{1, 50} {
		b.Run(fmt.Sprintf("senders=%d", senders), func(b *testing.B) {
			h := newHarness(b, harnessOptions{})
			send := &slackfake.Sender{BaseURL: h.srv.URL, Secret: secret,
				Client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: senders}}}
			cmd := slackfake.SlashCommand{UserID: carol, ChannelID: channel, Text: benchText}
			var (
				mu   sync.Mutex
				lat  = make([]time.Duration, 0, b.N)
				next atomic.Int64
				wg   sync.WaitGroup
			)
			b.ResetTimer()
			for range senders {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						start := time.Now()
						resp, err := send.Slash(b.Context(), cmd)
						d := time.Since(start)
						if err != nil || resp.Status != http.StatusOK {
							b.Errorf("slash: %v %d", err, resp.Status)
							return
						}
						mu.Lock()
						lat = append(lat, d)
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			h.settle()
			if len(lat) == 0 {
				return
			}
			slices.Sort(lat)
			pct := func(p int) float64 {
				return float64(lat[min(len(lat)-1, len(lat)*p/100)]) / float64(time.Millisecond)
			}
			b.ReportMetric(pct(50), "p50-ms")
			b.ReportMetric(pct(99), "p99-ms")
		})
	}
}
