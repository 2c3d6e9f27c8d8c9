package deployer_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/deployer"
	"github.com/nixdeploy/nixdeploy/runs"
)

// BenchmarkStream streams a log file from the lab's runner through the
// deployer into the database and a null sink, and reports lines/s, MB/s,
// the ratio to OpenSSH's own `ssh runner cat file >/dev/null` measured in
// the same run, and the peak heap in use. The log is 20 MB; set
// NIXDEPLOY_BENCH_MB=200 for the large run.
func BenchmarkStream(b *testing.B) {
	mb := 20
	if v := os.Getenv("NIXDEPLOY_BENCH_MB"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("NIXDEPLOY_BENCH_MB=%q", v)
		}
		mb = n
	}
	e := newEnv(b, envConfig{})
	logPath := filepath.Join(e.lab.Dir, "bench.log")
	lines, size := writeLog(b, logPath, int64(mb)<<20)
	e.lab.Set("nixos-rebuild.cat", logPath)
	e.lab.Set("nixos-rebuild.nochange", "1")
	sshSecs := opensshCat(b, e, logPath)

	// "sqlite" is the real path; "discard" replaces only the store, to
	// show how much of the time is the database's.
	for _, store := range []string{"sqlite", "discard"} {
		b.Run(store, func(b *testing.B) {
			opts := e.opts
			var count func(id int64) int64
			var lstore runs.Store = e.db
			if store == "discard" {
				ds := &discardStore{}
				opts.Store, lstore = ds, ds
				count = func(int64) int64 { return ds.lines.Load() }
			} else {
				count = func(id int64) int64 {
					n, err := e.db.LogCount(b.Context(), id)
					if err != nil {
						b.Fatal(err)
					}
					return n
				}
			}
			d, err := deployer.New(opts)
			if err != nil {
				b.Fatal(err)
			}
			benchRuns(b, e, runs.New(lstore, d), count, lines, size, sshSecs)
		})
	}
}

func benchRuns(b *testing.B, e *env, life *runs.Lifecycle, count func(int64) int64, lines, size int64, sshSecs float64) {
	runtime.GC()
	var peak uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()

	var stepSecs float64
	nruns := 0
	null := deployer.SinkFunc(func(nixdeploy.LogLine) {})
	for b.Loop() {
		var started, ended time.Time
		timing := deployer.SinkFunc(func(l nixdeploy.LogLine) {
			if l.Step == "nixos-rebuild" && l.Stream == nixdeploy.StreamEvent {
				if started.IsZero() {
					started = l.Time
				} else {
					ended = l.Time
				}
			}
		})
		dep := &nixdeploy.Deployment{Hosts: []string{"node1"}, Action: nixdeploy.ActionSwitch, Requester: "bench"}
		before := count(0)
		if _, err := life.Run(b.Context(), dep, null, timing); err != nil {
			b.Fatal(err)
		}
		stepSecs += ended.Sub(started).Seconds()
		if n := count(dep.ID) - before; n < lines {
			b.Fatalf("stored %d lines of %d", n, lines)
		}
		nruns++
	}
	close(stop)
	wg.Wait()
	per := stepSecs / float64(nruns)
	b.ReportMetric(float64(lines)/per, "lines/s")
	b.ReportMetric(float64(size)/per/1e6, "MB/s")
	b.ReportMetric(sshSecs/per, "x_openssh")
	b.ReportMetric(float64(peak)/(1<<20), "peak_heap_MiB")
	b.ReportMetric(float64(size)/(1<<20), "log_MiB")
}

// discardStore counts log lines and keeps nothing.
type discardStore struct {
	id    atomic.Int64
	lines atomic.Int64
}

func (s *discardStore) CreateDeployment(_ context.Context, d *nixdeploy.Deployment) error {
	d.ID = s.id.Add(1)
	return nil
}
func (s *discardStore) SetState(context.Context, int64, nixdeploy.State) error { return nil }
func (s *discardStore) Deployment(_ context.Context, id int64) (nixdeploy.Deployment, error) {
	return nixdeploy.Deployment{ID: id}, nil
}
func (s *discardStore) SetRevision(context.Context, int64, string) error { return nil }
func (s *discardStore) Finish(context.Context, int64, nixdeploy.State, int, string) error {
	return nil
}
func (s *discardStore) EndUnstarted(context.Context, int64, nixdeploy.State, string) error {
	return nil
}
func (s *discardStore) SetMessage(context.Context, int64, string, string) error         { return nil }
func (s *discardStore) SetLock(context.Context, int64, *nixdeploy.Lock) error           { return nil }
func (s *discardStore) CreateApproval(context.Context, *nixdeploy.Approval) error       { return nil }
func (s *discardStore) SetApprovalMessage(context.Context, int64, string, string) error { return nil }
func (s *discardStore) DecideApproval(context.Context, int64, nixdeploy.ApprovalState, string) (bool, error) {
	return false, nil
}
func (s *discardStore) AppendLogs(_ context.Context, _ int64, l []nixdeploy.LogLine) error {
	s.lines.Add(int64(len(l)))
	return nil
}
func (s *discardStore) RecordStep(context.Context, int64, nixdeploy.StepResult) error { return nil }
func (s *discardStore) PendingApprovals(context.Context) ([]nixdeploy.Approval, error) {
	return nil, nil
}
func (s *discardStore) Audit(context.Context, nixdeploy.AuditEvent) error { return nil }

// writeLog writes realistic build-log lines up to size bytes.
func writeLog(b *testing.B, path string, size int64) (lines, written int64) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for written < size {
		n, _ := fmt.Fprintf(w, "building '/nix/store/%032d-python3.12-example-package-%d.drv' on 'ssh://root@runner' (line %d)\n", lines, lines%97, lines)
		written += int64(n)
		lines++
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	return lines, written
}

// opensshCat times `ssh runner cat file >/dev/null` with OpenSSH's client.
func opensshCat(b *testing.B, e *env, path string) float64 {
	known := filepath.Join(e.lab.Dir, "bench_known_hosts")
	line := fmt.Sprintf("[%s]:%d %s\n", e.lab.Runner.Host, e.lab.Runner.Port, e.lab.Runner.HostKeyLine)
	if err := os.WriteFile(known, []byte(line), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command("ssh", "-i", e.lab.ClientKeyPath, "-p", strconv.Itoa(e.lab.Runner.Port),
		"-o", "UserKnownHostsFile="+known, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
		e.lab.User+"@"+e.lab.Runner.Host, "cat", path)
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer null.Close()
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = null, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("ssh cat: %v: %s", err, stderr.String())
	}
	return time.Since(start).Seconds()
}
