package deployer

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// recStore records what the emitter stores.
type recStore struct {
	Store
	mu    sync.Mutex
	lines []nixdeploy.LogLine
}

func (s *recStore) AppendLogs(_ context.Context, _ int64, l []nixdeploy.LogLine) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, l...)
	return nil
}

// batchRec is a BatchSink that records the lines it is given.
type batchRec struct{ lines []nixdeploy.LogLine }

func (b *batchRec) Line(l nixdeploy.LogLine)     { b.Lines([]nixdeploy.LogLine{l}) }
func (b *batchRec) Lines(ls []nixdeploy.LogLine) { b.lines = append(b.lines, ls...) }

// TestEmitterOrderAndTexts: lines written at once on two streams, with
// events and barriers between them, reach a line sink, a batch sink and
// the store identically: numbered 1, 2, 3, … in the order they were
// queued, every text exact (empty, long, not UTF-8), each stream's lines
// in their own order.
func TestEmitterOrderAndTexts(t *testing.T) {
	o := Options{Now: time.Now, FlushLines: 100, FlushInterval: time.Hour}
	store := &recStore{}
	o.Store = store
	var plain []nixdeploy.LogLine
	batch := &batchRec{}
	e := newEmitter(t.Context(), &o, 1, newRedactor(nil), []Sink{SinkFunc(func(l nixdeploy.LogLine) { plain = append(plain, l) }), batch},
		slog.New(slog.DiscardHandler))

	text := func(stream string, i int) string {
		switch i % 50 {
		case 7:
			return ""
		case 13:
			return strings.Repeat(stream, 40<<10)
		}
		return fmt.Sprintf("%s line %d", stream, i)
	}
	const n = 5000
	var wg sync.WaitGroup
	for _, stream := range []nixdeploy.Stream{nixdeploy.StreamStdout, nixdeploy.StreamStderr} {
		wg.Go(func() {
			for i := range n {
				e.line("h", "s", stream, []byte(text(string(stream), i)))
				if i%1000 == 999 {
					e.barrier()
				}
			}
		})
	}
	wg.Wait()
	e.event("h", "s", "done")
	e.line("h", "s", nixdeploy.StreamStdout, []byte("bad \xff utf-8"))
	if err := e.close(); err != nil {
		t.Fatal(err)
	}

	for name, got := range map[string][]nixdeploy.LogLine{"line sink": plain, "batch sink": batch.lines, "store": store.lines} {
		if len(got) != 2*n+2 {
			t.Fatalf("%s: %d lines, want %d", name, len(got), 2*n+2)
		}
		next := map[nixdeploy.Stream]int{}
		for i, l := range got {
			if l.Seq != int64(i+1) {
				t.Fatalf("%s: line %d has seq %d", name, i, l.Seq)
			}
			if i >= 2*n {
				continue
			}
			if want := text(string(l.Stream), next[l.Stream]); l.Text != want {
				t.Fatalf("%s: %s line %d is %.40q, want %.40q", name, l.Stream, next[l.Stream], l.Text, want)
			}
			next[l.Stream]++
		}
		if last := got[len(got)-1].Text; last != "bad \uFFFD utf-8" {
			t.Errorf("%s: invalid UTF-8 became %q", name, last)
		}
	}
	if !slices.EqualFunc(plain, batch.lines, func(a, b nixdeploy.LogLine) bool { return a == b }) {
		t.Error("the line sink and the batch sink saw different lines")
	}
}
