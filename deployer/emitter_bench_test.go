package deployer

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// nullStore keeps nothing; only AppendLogs is called by the emitter.
type nullStore struct{ Store }

func (nullStore) AppendLogs(context.Context, int64, []nixdeploy.LogLine) error { return nil }

// BenchmarkEmitter is the deployer's own cost per output line, without SSH
// and without a database: redaction, numbering, the sinks and batching for
// the store, with two streams written at once as a command's stdout and
// stderr are. bench/run's row 1 measures the whole path.
func BenchmarkEmitter(b *testing.B) {
	lines := make([][]byte, 1000)
	for i := range lines {
		lines[i] = fmt.Appendf(nil, "building '/nix/store/%032d-python3.12-pkg-%d.drv' on 'ssh://root@runner' (line %d)", i, i%97, i)
	}
	o := Options{Now: time.Now, Store: nullStore{}, FlushLines: 1000, FlushInterval: 250 * time.Millisecond}
	var n int64
	sink := SinkFunc(func(nixdeploy.LogLine) { n++ })
	e := newEmitter(context.Background(), &o, 1, newRedactor([]string{"hunter2-secret"}), []Sink{sink}, slog.New(slog.DiscardHandler))
	b.SetBytes(int64(len(lines[0]) + 1))
	i := 0
	for b.Loop() {
		e.line("node1", "nixos-rebuild", nixdeploy.StreamStdout, lines[i%len(lines)])
		i++
	}
	if err := e.close(); err != nil {
		b.Fatal(err)
	}
	if n != int64(i) {
		b.Fatalf("sink saw %d lines of %d", n, i)
	}
}
