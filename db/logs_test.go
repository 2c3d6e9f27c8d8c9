package db_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/db"
)

func readLog(t *testing.T, d *db.DB, id int64) []nixdeploy.LogLine {
	t.Helper()
	var out []nixdeploy.LogLine
	if err := d.EachLog(t.Context(), id, func(l nixdeploy.LogLine) error {
		out = append(out, l)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func sameLines(t *testing.T, got, want []nixdeploy.LogLine) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("read %d lines, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Seq != w.Seq || !g.Time.Equal(w.Time) || g.Host != w.Host || g.Step != w.Step || g.Stream != w.Stream || g.Text != w.Text {
			t.Fatalf("line %d = %+v, want %+v", i, g, w)
		}
	}
}

// TestLogRoundTrip: whatever a line holds (empty text, newlines, invalid
// UTF-8, a zero time, times out of order, every stream, hosts and steps
// changing mid-batch) comes back exactly, in seq order, from batches large
// enough to be split into several chunks.
func TestLogRoundTrip(t *testing.T) {
	d, _ := mustOpen(t, filepath.Join(t.TempDir(), "x.db"))
	dep := newDeployment(t, d, "ganon")
	base := time.Date(2026, 11, 26, 22, 0, 0, 0, time.UTC)
	texts := []string{"", "plain", "two\nlines", "\xff\xfe not utf-8", strings.Repeat("long ", 3000), "tab\there"}
	streams := []nixdeploy.Stream{nixdeploy.StreamStdout, nixdeploy.StreamStderr, nixdeploy.StreamEvent}
	var want []nixdeploy.LogLine
	for i := range 9000 {
		l := nixdeploy.LogLine{
			Seq:    int64(i + 1),
			Time:   base.Add(time.Duration(i%7-3) * time.Millisecond),
			Host:   []string{"ganon", "rk1-node1", ""}[i/1000%3],
			Step:   []string{"nixos-rebuild", "verify"}[i/10%2],
			Stream: streams[i%3],
			Text:   texts[i%len(texts)] + fmt.Sprint(i),
		}
		if i%500 == 0 {
			l.Time = time.Time{}
		}
		want = append(want, l)
	}
	// One batch over the chunk bounds, then small ones.
	if err := d.AppendLogs(t.Context(), dep.ID, want[:8000]); err != nil {
		t.Fatal(err)
	}
	for i := 8000; i < len(want); i += 333 {
		if err := d.AppendLogs(t.Context(), dep.ID, want[i:min(i+333, len(want))]); err != nil {
			t.Fatal(err)
		}
	}
	sameLines(t, readLog(t, d, dep.ID), want)
	if n, err := d.LogCount(t.Context(), dep.ID); err != nil || n != int64(len(want)) {
		t.Fatalf("LogCount = %d, %v; want %d", n, err, len(want))
	}
	other := newDeployment(t, d, "rk1-node2")
	if got := readLog(t, d, other.ID); len(got) != 0 {
		t.Fatalf("another deployment has %d lines", len(got))
	}
}

// TestLogIncompressible: text that does not compress (random bytes) is
// stored as it is and reads back the same as text that does.
func TestLogIncompressible(t *testing.T) {
	d, _ := mustOpen(t, filepath.Join(t.TempDir(), "x.db"))
	dep := newDeployment(t, d, "ganon")
	noise := make([]byte, 200_000)
	rand.Read(noise)
	var want []nixdeploy.LogLine
	for i := range 2000 {
		text := string(noise[i*100 : i*100+100])
		if i >= 1000 {
			text = "building '/nix/store/0000000000000000-foo.drv'"
		}
		want = append(want, nixdeploy.LogLine{Seq: int64(i + 1), Host: "ganon", Stream: nixdeploy.StreamStdout, Text: text})
	}
	for i := 0; i < len(want); i += 1000 {
		if err := d.AppendLogs(t.Context(), dep.ID, want[i:i+1000]); err != nil {
			t.Fatal(err)
		}
	}
	sameLines(t, readLog(t, d, dep.ID), want)
}

// TestLogSeqRules: a batch may come in any order and is stored sorted; a
// seq given twice, in one batch or across batches, is refused and leaves
// nothing behind.
func TestLogSeqRules(t *testing.T) {
	ctx := t.Context()
	d, _ := mustOpen(t, filepath.Join(t.TempDir(), "x.db"))
	dep := newDeployment(t, d, "ganon")
	line := func(seq int64) nixdeploy.LogLine {
		return nixdeploy.LogLine{Seq: seq, Host: "ganon", Stream: nixdeploy.StreamStdout, Text: fmt.Sprint("line ", seq)}
	}
	if err := d.AppendLogs(ctx, dep.ID, []nixdeploy.LogLine{line(3), line(1), line(2)}); err != nil {
		t.Fatal(err)
	}
	if err := d.AppendLogs(ctx, dep.ID, []nixdeploy.LogLine{line(10), line(20)}); err != nil {
		t.Fatal(err)
	}
	for name, batch := range map[string][]nixdeploy.LogLine{
		"twice in one batch":      {line(30), line(31), line(30)},
		"again across batches":    {line(2)},
		"inside an earlier range": {line(15)},
		"straddling a range":      {line(19), line(25)},
	} {
		if err := d.AppendLogs(ctx, dep.ID, batch); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	var got []int64
	for _, l := range readLog(t, d, dep.ID) {
		got = append(got, l.Seq)
	}
	if want := []int64{1, 2, 3, 10, 20}; !slices.Equal(got, want) {
		t.Fatalf("stored seqs %v, want %v", got, want)
	}
}

// TestLogMigratedFromLines: a database whose log still has one row per line
// (schema 0001) is migrated and reads back the same.
func TestLogMigratedFromLines(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "old.db")
	init, err := os.ReadFile("migrations/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	old, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	var want []nixdeploy.LogLine
	for i := range 5 {
		want = append(want, nixdeploy.LogLine{Seq: int64(i + 1), Time: base.Add(time.Duration(i) * time.Second),
			Host: "ganon", Step: "nixos-rebuild", Stream: nixdeploy.StreamStderr, Text: fmt.Sprint("old line ", i+1)})
	}
	stmts := []string{
		`CREATE TABLE schema_migrations (version TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)`,
		string(init),
		`INSERT INTO schema_migrations VALUES ('0001_init', 1)`,
		`INSERT INTO deployments (id, hosts, action, requester, source, state, created_at) VALUES (7, '["ganon"]', 'switch', 'U1', 'cli', 'succeeded', 1)`,
	}
	for _, s := range stmts {
		if _, err := old.ExecContext(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	// Stored out of order, read back in order.
	for _, i := range []int{3, 0, 4, 1, 2} {
		l := want[i]
		if _, err := old.ExecContext(ctx, `INSERT INTO log_lines VALUES (7, ?, ?, ?, ?, ?, ?)`,
			l.Seq, l.Time.UnixNano(), l.Host, l.Step, string(l.Stream), l.Text); err != nil {
			t.Fatal(err)
		}
	}
	old.Close()

	d, _ := mustOpen(t, path)
	sameLines(t, readLog(t, d, 7), want)
	if n, err := d.LogCount(ctx, 7); err != nil || n != 5 {
		t.Fatalf("LogCount = %d, %v", n, err)
	}
	// New lines follow the migrated ones; old seqs stay taken.
	if err := d.AppendLogs(ctx, 7, []nixdeploy.LogLine{{Seq: 3, Text: "again"}}); err == nil {
		t.Fatal("a migrated seq was accepted again")
	}
	next := nixdeploy.LogLine{Seq: 6, Time: base, Host: "ganon", Stream: nixdeploy.StreamEvent, Text: "new"}
	if err := d.AppendLogs(ctx, 7, []nixdeploy.LogLine{next}); err != nil {
		t.Fatal(err)
	}
	sameLines(t, readLog(t, d, 7), append(want, next))
}

// TestEachLogStops: an error from fn ends the walk and is returned as is.
func TestEachLogStops(t *testing.T) {
	d, _ := mustOpen(t, filepath.Join(t.TempDir(), "x.db"))
	dep := newDeployment(t, d, "ganon")
	lines := make([]nixdeploy.LogLine, 100)
	for i := range lines {
		lines[i] = nixdeploy.LogLine{Seq: int64(i + 1), Text: "x"}
	}
	if err := d.AppendLogs(context.Background(), dep.ID, lines); err != nil {
		t.Fatal(err)
	}
	stop := fmt.Errorf("enough")
	n := 0
	err := d.EachLog(t.Context(), dep.ID, func(nixdeploy.LogLine) error {
		n++
		if n == 10 {
			return stop
		}
		return nil
	})
	if err != stop || n != 10 {
		t.Fatalf("EachLog = %v after %d lines", err, n)
	}
}
