package bench_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy/db"
	"github.com/nixdeploy/nixdeploy/deployer"
	"github.com/nixdeploy/nixdeploy/runs"
	"github.com/nixdeploy/nixdeploy/schedules"
)

// stubSeconds is how long each host's nixos-rebuild stub takes.
const stubSeconds = 1

// rolloutSchedules are three schedules over the lab's hosts, run by hand:
// one host alone, all four rolling, all four in parallel (bounded at 4).
const rolloutSchedules = `
[[schedules]]
name = "one"
cron = "0 3 * * *"
hosts = ["rk1-node1"]
action = "switch"

[[schedules]]
name = "rolling"
cron = "0 3 * * *"
hosts = ["@lab"]
action = "switch"
strategy = "rolling"

[[schedules]]
name = "parallel"
cron = "0 3 * * *"
hosts = ["@lab"]
action = "switch"
strategy = "parallel"
parallel = 4
`

// BenchmarkRow6Rollout switches the four lab hosts through the scheduler
// and the real deployer, rolling and then in parallel, with every host's
// nixos-rebuild taking a second, and compares both with one host switched
// alone in the same iteration.
func BenchmarkRow6Rollout(b *testing.B) {
	l := useLab(b)
	cfg, _ := l.config(b, rolloutSchedules)
	l.set(b, "nixos-rebuild.sleep", fmt.Sprint(stubSeconds))
	store, _, err := db.Open(context.Background(), filepath.Join(b.TempDir(), "nixdeploy.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	d, err := deployer.New(deployer.Options{Config: cfg, Store: store, HostKeys: l.hostKeys(), ClientKey: l.client(b),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	sched, err := schedules.New(schedules.Options{Config: cfg, Store: store, Deployer: runs.New(store, d)})
	if err != nil {
		b.Fatal(err)
	}
	defer sched.Stop()
	run := func(name string) float64 {
		start := time.Now()
		id, err := sched.RunNow(context.Background(), name, "bench")
		if err != nil {
			b.Fatal(err)
		}
		sched.Wait()
		took := time.Since(start).Seconds()
		runs, err := store.ScheduleRuns(context.Background(), name, 1)
		if err != nil || len(runs) != 1 || runs[0].ID != id || runs[0].Outcome != schedules.OutcomeSucceeded {
			b.Fatalf("run %d of %s: %+v %v", id, name, runs, err)
		}
		return took
	}

	s := samples{}
	for b.Loop() {
		one := run("one")
		rolling := run("rolling")
		parallel := run("parallel")
		s.add("one", one)
		s.add("rolling", rolling)
		s.add("parallel", parallel)
		s.add("rolling/one", rolling/one)
		s.add("parallel/one", parallel/one)
	}
	s.enough(b, "one")
	par := s.dist("parallel/one")
	b.ReportMetric(par.med, "parallel/one")
	row{
		n:    6,
		what: fmt.Sprintf("switch 4 lab hosts through the scheduler, each host's nixos-rebuild stub taking %d s", stubSeconds),
		ours: fmt.Sprintf("rolling %s s; parallel (at most 4) %s s", s.dist("rolling"), s.dist("parallel")),
		ref:  fmt.Sprintf("one host %s s; 4 × one host %s s", s.dist("one"), num(4*s.dist("one").med)),
		res:  fmt.Sprintf("rolling %s × one host; parallel %s × one host", s.dist("rolling/one"), par),
		goal: "parallel ≤ 1.3 × one host",
		met:  mark(par.med <= 1.3),
	}.write(b)
}
