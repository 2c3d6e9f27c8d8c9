package bench_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/db"
	"github.com/nixdeploy/nixdeploy/deployer"
)

// BenchmarkRow2NoopDeploy runs a switch whose nixos-rebuild does nothing
// through the real deployer: connecting to the runner and the target with
// pinned keys, every step of the plan, verification and the database
// records. Its reference, in the same iteration, is OpenSSH running `true`
// on the target as many times as the deployment opened SSH sessions, which
// the lab's sshd logs count; the difference is nixdeploy's overhead.
func BenchmarkRow2NoopDeploy(b *testing.B) {
	l := useLab(b)
	cfg, _ := l.config(b, "")
	const host = "rk1-node2"
	l.set(b, "nixos-rebuild."+host+".nochange", "1")
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
	target := l.target(b, host)
	sessions := func() int { return l.Runner.sessions(b) + target.sessions(b) }
	plan, err := d.Plan(host, nixdeploy.ActionSwitch)
	if err != nil {
		b.Fatal(err)
	}

	s := samples{}
	var n int
	for b.Loop() {
		before := sessions()
		start := time.Now()
		dep := &nixdeploy.Deployment{Hosts: []string{host}, Action: nixdeploy.ActionSwitch, Requester: "bench"}
		if _, err := d.Run(context.Background(), dep); err != nil {
			b.Fatal(err)
		}
		ours := time.Since(start)
		// sshd logs a session before it runs the command, and the
		// deployment waited for every command to end.
		if n = sessions() - before; n == 0 {
			b.Fatal("sshd logged no session for the deployment")
		}

		start = time.Now()
		for range n {
			cmd := l.openssh(b, target, "true")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Run(); err != nil {
				b.Fatalf("ssh true: %v: %s", err, stderr.String())
			}
		}
		ref := time.Since(start)
		s.add("ours", ours.Seconds()*1000)
		s.add("ref", ref.Seconds()*1000)
		s.add("over", (ours-ref).Seconds()*1000)
	}
	s.enough(b, "over")
	over := s.dist("over")
	b.ReportMetric(over.med, "overhead-ms")
	row{
		n:    2,
		what: fmt.Sprintf("no-op switch end to end (%d plan steps: connect, probe, nixos-rebuild, verify; records in SQLite)", len(plan.Steps)),
		ours: s.dist("ours").String() + " ms",
		ref:  fmt.Sprintf("`ssh host true` × %d (the SSH sessions the deployment opened, from sshd's log): %s ms", n, s.dist("ref")),
		res:  "overhead " + over.String() + " ms",
		goal: "overhead ≤ 100 ms per deployment",
		met:  mark(over.med <= 100),
	}.write(b)
}
