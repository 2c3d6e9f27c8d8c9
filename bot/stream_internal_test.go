package bot

import (
	"fmt"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// TestLogFileLineFormat: the uploaded log's lines read exactly as the
// layout "2006-01-02T15:04:05.000Z host step stream: text" gives them,
// whether or not consecutive lines share a second.
func TestLogFileLineFormat(t *testing.T) {
	base := time.Date(2026, 11, 26, 22, 0, 59, 999_999_999, time.UTC)
	times := []time.Time{
		{}, base, base, base.Add(time.Nanosecond), base.Add(time.Millisecond), base.Add(-time.Millisecond),
		base.In(time.FixedZone("x", 3600)), time.Date(12000, 1, 2, 3, 4, 5, 6_000_000, time.UTC),
		time.Date(1969, 12, 31, 23, 59, 59, 500_000_000, time.UTC), time.Unix(0, 0),
	}
	var f logFormat
	for i, ts := range times {
		l := nixdeploy.LogLine{Seq: int64(i), Time: ts, Host: []string{"", "ganon"}[i%2], Step: []string{"switch", ""}[i%2],
			Stream: nixdeploy.StreamStdout, Text: fmt.Sprint("text ", i)}
		host, step := l.Host, l.Step
		if host == "" {
			host = "-"
		}
		if step == "" {
			step = "-"
		}
		want := fmt.Sprintf("%s %s %s %s: %s\n", l.Time.UTC().Format("2006-01-02T15:04:05.000Z"), host, step, l.Stream, l.Text)
		if got := string(f.append(nil, l)); got != want {
			t.Errorf("line %d: got %q, want %q", i, got, want)
		}
		if got := LogFileLine(l); got != want {
			t.Errorf("LogFileLine %d: got %q, want %q", i, got, want)
		}
	}
}

// TestStreamerLinesLikeLine: taking lines in batches of any size leaves
// the status the same as taking them one at a time: count, host, step,
// the newest marker and phase, and the tail in order.
func TestStreamerLinesLikeLine(t *testing.T) {
	var lines []nixdeploy.LogLine
	for i := range 100 {
		l := nixdeploy.LogLine{Seq: int64(i + 1), Host: "ganon", Step: fmt.Sprint("step", i/30), Stream: nixdeploy.StreamStdout, Text: fmt.Sprint("line ", i)}
		switch i {
		case 20:
			l.Stream, l.Text = nixdeploy.StreamEvent, nixdeploy.PhasePrefix+"Formatting hard drive with disko"
		case 61:
			l.Stream, l.Text = nixdeploy.StreamEvent, nixdeploy.PhasePrefix+"Installing NixOS"
		case 62:
			l.Text = "### a command's output is not a phase ###"
		}
		lines = append(lines, l)
	}
	b := &Bot{clock: RealClock{}, tailLines: 15}
	one := newStreamer(b, nixdeploy.Deployment{ID: 1}, "C1", "")
	for _, l := range lines {
		one.Line(l)
	}
	want := one.snapshot()
	for _, size := range []int{2, 7, 15, 16, 100} {
		s := newStreamer(b, nixdeploy.Deployment{ID: 1}, "C1", "")
		for start := 0; start < len(lines); start += size {
			s.Lines(lines[start:min(start+size, len(lines))])
		}
		got := s.snapshot()
		if got.lines != want.lines || got.host != want.host || got.step != want.step || got.marker != want.marker || got.phase != want.phase ||
			fmt.Sprint(got.tail) != fmt.Sprint(want.tail) {
			t.Errorf("batches of %d: %+v\nwant %+v", size, got, want)
		}
	}
	if want.marker != "Installing NixOS" || len(want.tail) != 15 || want.tail[14] != "line 99" {
		t.Errorf("one at a time: marker %q, tail %q", want.marker, want.tail)
	}
}
