package schedules_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/deployer"
	"github.com/nixdeploy/nixdeploy/internal/sshlab"
	"github.com/nixdeploy/nixdeploy/schedules"
)

// labReporter reads the board with the real deployer, as the bot does,
// and keeps what it posts.
type labReporter struct {
	d      *deployer.Deployer
	mu     sync.Mutex
	posted []nixdeploy.Board
}

func (l *labReporter) Board(ctx context.Context, hosts []string) (nixdeploy.Board, error) {
	rs, err := l.d.ReadHosts(ctx, hosts)
	if err != nil {
		return nixdeploy.Board{}, err
	}
	var b nixdeploy.Board
	for _, r := range rs {
		b.Rows = append(b.Rows, nixdeploy.BoardRow{HostReading: r})
	}
	return b, nil
}

func (l *labReporter) PostBoard(_ context.Context, _ string, b nixdeploy.Board) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.posted = append(l.posted, b)
	return nil
}

func (l *labReporter) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.posted)
}

// The report action reads the real lab hosts and posts the board only
// when it changed since the board it last posted; always = true posts
// every time. Neither deploys anything.
func TestLabReportPostsOnlyOnChange(t *testing.T) {
	sshlab.Require(t)
	lab := sshlab.New(t, sshlab.Options{Hosts: []string{"rk1-node1", "rk1-node2"}})
	cfg := lab.Config(`
[[schedules]]
name = "morning-board"
cron = "0 8 * * *"
hosts = ["@lab"]
action = "report"

[[schedules]]
name = "board-always"
cron = "0 9 * * *"
hosts = ["@lab"]
action = "report"
always = true
`)
	for _, h := range []string{"rk1-node1", "rk1-node2"} {
		lab.SetExpected(h, lab.CurrentSystem(h))
	}
	clk := schedules.NewFakeClock(time.Date(2026, 5, 13, 8, 0, 0, 0, time.UTC))
	store := tempDB(t, clk)
	d, err := deployer.New(deployer.Options{
		Config: cfg, Store: store, HostKeys: lab.HostKeys(), ClientKey: lab.Client, ConnectTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	rep := &labReporter{d: d}
	notes := &fakeNotifier{}
	s, err := schedules.New(schedules.Options{Config: cfg, Store: store, Deployer: &fakeDeployer{clk: clk}, Notifier: notes, Reporter: rep, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	run := func(name string) nixdeploy.ScheduleRun {
		t.Helper()
		if _, err := s.RunNow(t.Context(), name, "U0ALICE01"); err != nil {
			t.Fatal(err)
		}
		s.Wait()
		clk.Advance(time.Hour)
		runs, err := store.ScheduleRuns(t.Context(), name, 1)
		if err != nil || len(runs) != 1 {
			t.Fatalf("runs of %s: %v %v", name, runs, err)
		}
		return runs[0]
	}

	r := run("morning-board")
	if rep.count() != 1 || r.Outcome != schedules.OutcomeSucceeded || !strings.HasPrefix(r.Detail, "posted: Drift board: all 2 hosts run the expected system") {
		t.Fatalf("first run: %d posts, run %+v", rep.count(), r)
	}
	r = run("morning-board")
	if rep.count() != 1 || r.Outcome != schedules.OutcomeSucceeded || r.Detail != "unchanged since the board posted 2026-05-13 08:00 UTC; not posted" {
		t.Errorf("unchanged board: %d posts, run %+v", rep.count(), r)
	}
	// rk1-node2 drifts: the flake now says something else.
	lab.Set("nix.revision", "89abcdef0123456789abcdef0123456789abcdef")
	lab.SetExpected("rk1-node2", lab.Dir+"/store/nixos-system-rk1-node2-new")
	r = run("morning-board")
	if rep.count() != 2 || !strings.Contains(r.Detail, "1 drifted") {
		t.Fatalf("changed board: %d posts, run %+v", rep.count(), r)
	}
	if row := rep.posted[1].Rows[1]; row.Host != "rk1-node2" || row.Drift != nixdeploy.DriftYes {
		t.Errorf("posted row %+v, want rk1-node2 drifted", row)
	}
	if run("morning-board"); rep.count() != 2 {
		t.Errorf("the same drift was posted again")
	}
	// always = true posts an unchanged board as well.
	run("board-always")
	run("board-always")
	if rep.count() != 4 {
		t.Errorf("always: %d posts, want 4", rep.count())
	}
	// A report deploys nothing and posts no run summary.
	if n := len(lab.CallsTo("nixos-rebuild")); n != 0 {
		t.Errorf("nixos-rebuild ran %d times", n)
	}
	if n := len(notes.all()); n != 0 {
		t.Errorf("%d summaries posted for report runs", n)
	}
}

// A board that cannot be read fails the run and says so in a summary.
func TestReportFailureIsSummarised(t *testing.T) {
	clk := schedules.NewFakeClock(time.Date(2026, 5, 13, 8, 0, 0, 0, time.UTC))
	store := tempDB(t, clk)
	sc := nightly()
	sc.Name, sc.Action = "board", nixdeploy.ScheduleReport
	cfg := fleet(sc)
	notes := &fakeNotifier{}
	s, err := schedules.New(schedules.Options{Config: cfg, Store: store, Deployer: &fakeDeployer{clk: clk}, Notifier: notes, Reporter: failingReporter{}, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	if _, err := s.RunNow(t.Context(), "board", "U0ALICE01"); err != nil {
		t.Fatal(err)
	}
	s.Wait()
	sums := notes.all()
	if len(sums) != 1 || sums[0].Outcome != schedules.OutcomeFailed || !strings.Contains(sums[0].Detail, "could not read the board: read hosts: runner unreachable") {
		t.Errorf("summaries %+v", sums)
	}
	// Without a reporter a report schedule is refused.
	if _, err := schedules.New(schedules.Options{Config: cfg, Store: store, Deployer: &fakeDeployer{clk: clk}}); err == nil || !strings.Contains(err.Error(), "needs a reporter") {
		t.Errorf("no reporter: %v", err)
	}
}

type failingReporter struct{}

func (failingReporter) Board(context.Context, []string) (nixdeploy.Board, error) {
	return nixdeploy.Board{}, errorString("read hosts: runner unreachable")
}

func (failingReporter) PostBoard(context.Context, string, nixdeploy.Board) error { return nil }

type errorString string

func (e errorString) Error() string { return string(e) }
