package bench_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/deployer"
)

// boardGoal is row 9's bound on reading the board of 100 hosts.
const boardGoal = 10 * time.Second

// BenchmarkRow9Board reads the drift board of 100 simulated hosts
// (internal/simfleet: SSH servers in this process, no simulated delay)
// with the real deployer at its default parallelism: each host's running
// and booted system over its pinned connection, and the runner's lock and
// evaluation of the expected systems. Each iteration reads it twice: cold,
// with a new deployer (the revision not evaluated yet), and warm, the same
// deployer again (served from its per-revision cache). The SSH sessions are
// counted from the simulated servers' command log: every session runs one
// command.
func BenchmarkRow9Board(b *testing.B) {
	fleet, cfg, keys, client, store := startSimFleet(b, "", "", "")
	newDeployer := func() *deployer.Deployer {
		d, err := deployer.New(deployer.Options{Config: cfg, Store: store, HostKeys: keys, ClientKey: client, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		return d
	}
	read := func(d *deployer.Deployer) (secs float64, sessions, runner int) {
		before := len(fleet.Calls())
		start := time.Now()
		rs, err := d.ReadHosts(context.Background(), nil)
		secs = time.Since(start).Seconds()
		if err != nil || len(rs) != scaleHosts {
			b.Fatalf("read: %d readings, %v", len(rs), err)
		}
		for _, rd := range rs {
			// The simulated hosts run their system from before the
			// flake's revision: every one drifts, none is unknown.
			if rd.Drift != nixdeploy.DriftYes || rd.Running == "" || rd.Expected == "" {
				b.Fatalf("reading of %s: %+v", rd.Host, rd)
			}
		}
		calls := fleet.Calls()[before:]
		for _, c := range calls {
			if strings.HasPrefix(c, "runner: ") {
				runner++
			}
		}
		return secs, len(calls), runner
	}

	s := samples{}
	var cold, warm, coldRunner, warmRunner int
	for b.Loop() {
		d := newDeployer()
		secs, n, rn := read(d)
		s.add("cold", secs)
		cold, coldRunner = n, rn
		secs, n, rn = read(d)
		s.add("warm", secs)
		warm, warmRunner = n, rn
	}
	s.enough(b, "cold")
	b.ReportMetric(s.dist("cold").med, "cold-s")
	b.ReportMetric(s.dist("warm").med, "warm-s")
	b.ReportMetric(float64(cold), "cold-sessions")
	met := "yes"
	if time.Duration(s.dist("cold").max*float64(time.Second)) >= boardGoal {
		met = "**no**"
	}
	row{
		n:    9,
		what: fmt.Sprintf("the drift board of %d simulated hosts (simfleet), read at the default parallelism of 16", scaleHosts),
		ours: fmt.Sprintf("cold %s s, %d SSH sessions (%d on the runner: lock, eval); warm %s s, %d sessions (%d on the runner: lock)", s.dist("cold"), cold, coldRunner, s.dist("warm"), warm, warmRunner),
		ref:  "none: the goal is the issue's bound",
		res:  "every host read, its expected system evaluated once per revision",
		goal: "< 10 s",
		met:  met,
	}.write(b)
}
