package bench_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/db"
	"github.com/nixdeploy/nixdeploy/deployer"
	"github.com/nixdeploy/nixdeploy/internal/simfleet"
	"github.com/nixdeploy/nixdeploy/internal/sshlab"
	"github.com/nixdeploy/nixdeploy/runs"
	"github.com/nixdeploy/nixdeploy/schedules"
)

// scaleHosts is the size of row 8's simulated fleet.
const scaleHosts = 100

func newSigner(b *testing.B) (ssh.Signer, []byte) {
	b.Helper()
	s, pemBytes, err := sshlab.NewKey()
	if err != nil {
		b.Fatal(err)
	}
	return s, pemBytes
}

// BenchmarkRow8Scale switches 100 simulated hosts (internal/simfleet:
// SSH servers in this process that answer like the runner and NixOS hosts,
// with no simulated delay) through the scheduler and the real deployer, in
// parallel at the config's default bound (2), and reports the total wall
// time and the process's peak RSS, which includes the simulated fleet. It
// shows how the cost grows with the fleet; there is no reference.
func BenchmarkRow8Scale(b *testing.B) {
	_, cfg, keys, client, store := startSimFleet(b, labSlack, "tags = [\"sim\"]\n",
		"[[schedules]]\nname = \"all\"\ncron = \"0 3 * * *\"\nhosts = [\"@sim\"]\naction = \"switch\"\nstrategy = \"parallel\"\n")
	d, err := deployer.New(deployer.Options{Config: cfg, Store: store, HostKeys: keys, ClientKey: client, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	sched, err := schedules.New(schedules.Options{Config: cfg, Store: store, Deployer: runs.New(store, d)})
	if err != nil {
		b.Fatal(err)
	}
	defer sched.Stop()

	s := samples{}
	for b.Loop() {
		start := time.Now()
		id, err := sched.RunNow(context.Background(), "all", "bench")
		if err != nil {
			b.Fatal(err)
		}
		sched.Wait()
		took := time.Since(start).Seconds()
		runs, err := store.ScheduleRuns(context.Background(), "all", 1)
		if err != nil || len(runs) != 1 || runs[0].ID != id || runs[0].Outcome != schedules.OutcomeSucceeded || len(runs[0].Hosts) != scaleHosts {
			b.Fatalf("run %d: %+v %v", id, runs, err)
		}
		s.add("secs", took)
		s.add("per-host-ms", took*1000/scaleHosts)
		s.add("rss", peakRSSMiB(b))
	}
	s.enough(b, "secs")
	b.ReportMetric(s.dist("secs").med, "wall-s")
	b.ReportMetric(s.dist("rss").med, "peak_rss_MiB")
	row{
		n:    8,
		what: fmt.Sprintf("switch %d simulated hosts (simfleet) through the scheduler, parallel at the default bound of %d", scaleHosts, cfg.Schedules[0].Parallel),
		ours: fmt.Sprintf("wall %s s (%s ms a host); peak RSS %s MiB, the simulated fleet included", s.dist("secs"), s.dist("per-host-ms"), s.dist("rss")),
		ref:  "none: the row shows how cost grows with the fleet (rows 2 and 6 are the per-host references)",
		res:  "every host switched and verified in every run",
		goal: "all hosts succeed",
		met:  "yes",
	}.write(b)
}

// peakRSSMiB is the process's peak resident set (VmHWM), Linux only.
func peakRSSMiB(b *testing.B) float64 {
	b.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err == nil {
				return kb / 1024
			}
		}
	}
	return 0
}

// startSimFleet starts scaleHosts simulated hosts (internal/simfleet, in
// this process) and returns them with a fleet config for them (head after
// the runner, hostExtra in each host's table, tail at the end), their keys,
// the bot's key and an empty database; all end with the benchmark.
func startSimFleet(b *testing.B, head, hostExtra, tail string) (*simfleet.Fleet, *nixdeploy.Config, sshlab.MemKeys, ssh.Signer, *db.DB) {
	b.Helper()
	keys := sshlab.MemKeys{Private: map[string][]byte{}}
	var hosts []simfleet.Host
	for i := 1; i <= scaleHosts; i++ {
		name := fmt.Sprintf("sim%03d", i)
		signer, pemBytes := newSigner(b)
		keys.Private[name] = pemBytes
		hosts = append(hosts, simfleet.Host{Name: name, System: nixdeploy.SystemX86_64, Disk: "/dev/sda", HostKey: signer})
	}
	client, _ := newSigner(b)
	fleet, err := simfleet.Start(simfleet.Options{Hosts: hosts, ClientKey: client.PublicKey()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(fleet.Close)
	var t strings.Builder
	r := fleet.Runner()
	fmt.Fprintf(&t, "flake = \"/home/michael/dots/nix\"\ninstaller_flake = \"/home/michael/dots/nix/nixos-installer\"\n[runner]\naddress = \"%s@%s\"\nhost_key = %q\n",
		fleet.RunnerUser(), r.Addr(), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(r.HostKey))))
	t.WriteString(head)
	for _, h := range hosts {
		e, _ := fleet.Host(h.Name)
		fmt.Fprintf(&t, "[[hosts]]\nname = %q\naddress = %q\nport = %d\nsystem = %q\n%sdisk = \"/dev/sda\"\n", h.Name, e.IP, e.Port, h.System, hostExtra)
	}
	t.WriteString(tail)
	cfg, err := nixdeploy.ParseConfig(filepath.Join(b.TempDir(), "nixdeploy.toml"), []byte(t.String()))
	if err != nil {
		b.Fatal(err)
	}
	store, _, err := db.Open(context.Background(), filepath.Join(b.TempDir(), "nixdeploy.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	return fleet, cfg, keys, client, store
}
