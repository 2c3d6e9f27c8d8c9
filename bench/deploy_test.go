package bench_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/db"
	"github.com/nixdeploy/nixdeploy/deployer"
	"github.com/nixdeploy/nixdeploy/runs"
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
		if _, err := runs.New(store, d).Run(context.Background(), dep); err != nil {
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

		// What a careful script does, and what nixos-rebuild itself does:
		// one multiplexed connection (ControlMaster=auto, ControlPersist)
		// for the same n commands, its setup and teardown included.
		start = time.Now()
		ctl := muxDir(b)
		for range n {
			cmd := opensshMux(l, target, ctl, "true")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Run(); err != nil {
				b.Fatalf("ssh (ControlMaster) true: %v: %s", err, stderr.String())
			}
		}
		if err := opensshMux(l, target, ctl, "-O", "exit").Run(); err != nil {
			b.Fatalf("ssh -O exit: %v", err)
		}
		mux := time.Since(start)
		s.add("ours", ours.Seconds()*1000)
		s.add("ref", ref.Seconds()*1000)
		s.add("mux", mux.Seconds()*1000)
		s.add("over", (ours-ref).Seconds()*1000)
		s.add("overmux", (ours-mux).Seconds()*1000)
	}
	s.enough(b, "over")
	over, overMux := s.dist("over"), s.dist("overmux")
	b.ReportMetric(overMux.med, "overhead-vs-controlmaster-ms")
	b.ReportMetric(over.med, "overhead-ms")
	row{
		n:    2,
		what: fmt.Sprintf("no-op switch end to end (%d plan steps: connect, probe, nixos-rebuild, verify; records in SQLite)", len(plan.Steps)),
		ours: s.dist("ours").String() + " ms",
		ref: fmt.Sprintf("OpenSSH with ControlMaster=auto and ControlPersist, `true` × %d on one master, setup and exit included: %s ms; "+
			"fresh `ssh host true` × %d (the SSH sessions the deployment opened, from sshd's log): %s ms", n, s.dist("mux"), n, s.dist("ref")),
		res:  "overhead " + overMux.String() + " ms over ControlMaster; " + over.String() + " ms over fresh ssh",
		goal: "overhead ≤ 100 ms per deployment over ControlMaster",
		met:  mark(overMux.med <= 100),
	}.write(b)
}

// muxDir is a short directory for ControlPath: a unix socket path must fit
// in about 100 bytes, and b.TempDir's do not always.
func muxDir(b *testing.B) string {
	b.Helper()
	dir, err := os.MkdirTemp("", "ndcm")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// opensshMux is lab.openssh with connection sharing: the first command
// starts a master in the background that later ones reuse.
func opensshMux(l *lab, s server, dir string, argv ...string) *exec.Cmd {
	known := filepath.Join(l.Dir, "known_hosts_"+s.Name)
	args := []string{"-i", l.ClientKeyPath, "-p", strconv.Itoa(s.Port),
		"-o", "UserKnownHostsFile=" + known, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
		"-o", "ControlMaster=auto", "-o", "ControlPath=" + filepath.Join(dir, "%C"), "-o", "ControlPersist=60",
		"-F", "/dev/null"}
	if len(argv) > 0 && argv[0] == "-O" {
		args = append(args, argv...)
		return exec.Command("ssh", append(args, l.User+"@"+s.Host)...)
	}
	return exec.Command("ssh", append(append(args, l.User+"@"+s.Host), argv...)...)
}
