package bench_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The row 1 log: 2,000,000 lines of 100 bytes, 200 MB.
const (
	streamLines    = 2_000_000
	streamLineSize = 100
)

// BenchmarkRow1Stream streams a 200 MB, 2,000,000-line output of the lab
// runner's nixos-rebuild stub through nixdeploy (cmd/streambench: the bot,
// the deployer, SQLite, a Slack that drops everything) and, in the same
// iteration, through OpenSSH's `ssh runner cat file >/dev/null`. It reports
// both throughputs, their ratio and nixdeploy's peak RSS.
func BenchmarkRow1Stream(b *testing.B) {
	l := useLab(b)
	bin := binary(b, envStreambench, "github.com/nixdeploy/nixdeploy/bench/cmd/streambench")
	dir := b.TempDir()
	logPath := filepath.Join(dir, "build.log")
	size := writeBuildLog(b, logPath, streamLines, streamLineSize)
	const host = "rk1-node1"
	l.set(b, "nixos-rebuild."+host+".cat", logPath)
	l.set(b, "nixos-rebuild."+host+".nochange", "1")
	l.set(b, "nixos-rebuild."+host+".stamp", "1")
	_, cfgPath := l.config(b, "")
	// Both sides read the file from the page cache.
	if err := exec.Command("cat", logPath).Run(); err != nil {
		b.Fatal(err)
	}

	s := samples{}
	run := 0
	for b.Loop() {
		run++
		// The reference, OpenSSH writing to /dev/null as before, timed
		// whole (connection set-up included, the old column) and as a
		// stream: the whole minus the set-up, which `ssh runner true`
		// measures in the same iteration. (Reading its output in this
		// process to see the first byte would slow it: a pipe into Go
		// took `ssh cat` from ~280 to ~100 MB/s.)
		setup := time.Now()
		if out, err := l.openssh(b, l.Runner, "true").CombinedOutput(); err != nil {
			b.Fatalf("ssh true: %v: %s", err, out)
		}
		setupSecs := time.Since(setup).Seconds()
		ssh := l.openssh(b, l.Runner, "cat", logPath)
		var stderr bytes.Buffer
		ssh.Stderr = &stderr
		null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		ssh.Stdout = null
		start := time.Now()
		err = ssh.Run()
		refSecs := time.Since(start).Seconds()
		null.Close()
		if err != nil {
			b.Fatalf("ssh cat: %v: %s", err, stderr.String())
		}
		refStream := refSecs - setupSecs
		if refStream <= 0 {
			b.Fatalf("ssh cat took %.3f s, its set-up alone %.3f s", refSecs, setupSecs)
		}

		dbPath := filepath.Join(dir, fmt.Sprintf("run%d.db", run))
		args := []string{"-config", cfgPath, "-ssh-key", l.ClientKeyPath, "-db", dbPath, "-host", host}
		if p := os.Getenv("NIXDEPLOY_BENCH_CPUPROFILE"); p != "" {
			// One profile of the last run, for bench/README.md's notes.
			args = append(args, "-cpuprofile", p)
		}
		cmd := exec.Command(bin, args...)
		stderr.Reset()
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("streambench: %v: %s", err, stderr.String())
		}
		var res struct {
			StepSeconds float64 `json:"step_seconds"`
			StepEnded   int64   `json:"step_ended_unix_nano"`
			Lines       int64   `json:"lines"`
			UploadBytes int64   `json:"upload_bytes"`
			VmHWMKiB    int64   `json:"vmhwm_kib"`
		}
		if err := json.Unmarshal(out, &res); err != nil {
			b.Fatalf("streambench printed %q: %v", out, err)
		}
		for _, suffix := range []string{"", "-wal", "-shm"} {
			os.Remove(dbPath + suffix)
		}
		if res.Lines < streamLines || res.UploadBytes < size {
			b.Fatalf("stored %d lines and uploaded %d bytes, want at least %d and %d", res.Lines, res.UploadBytes, streamLines, size)
		}
		// nixdeploy's stream: from the stub's first printed byte (its
		// stamp, after its own ssh hop to the target, which the real
		// nixos-rebuild makes too) to the step's end.
		stamp, err := os.ReadFile(filepath.Join(l.ControlDir, "nixos-rebuild."+host+".catstart"))
		if err != nil {
			b.Fatalf("the stub left no start stamp: %v", err)
		}
		catStart, err := strconv.ParseInt(strings.TrimSpace(string(stamp)), 10, 64)
		if err != nil {
			b.Fatalf("start stamp %q: %v", stamp, err)
		}
		streamSecs := float64(res.StepEnded-catStart) / 1e9
		if streamSecs <= 0 || streamSecs > res.StepSeconds {
			b.Fatalf("stream took %.3f s of a %.3f s step", streamSecs, res.StepSeconds)
		}
		mb := float64(size) / 1e6
		s.add("ours", mb/streamSecs)
		s.add("ref", mb/refStream)
		s.add("ratio", refStream/streamSecs)
		s.add("ours-step", mb/res.StepSeconds)
		s.add("ref-whole", mb/refSecs)
		s.add("ratio-whole", refSecs/res.StepSeconds)
		s.add("rss", float64(res.VmHWMKiB)/1024)
	}
	s.enough(b, "ratio")
	ratio, rss := s.dist("ratio"), s.dist("rss")
	b.ReportMetric(ratio.med, "x_openssh")
	b.ReportMetric(rss.med, "peak_rss_MiB")
	b.ReportMetric(s.dist("ours").med, "MB/s")
	row{
		n:    1,
		what: fmt.Sprintf("stream %.0f MB / %d lines: lab sshd → deployer → SQLite + null Slack (log read back and uploaded)", float64(size)/1e6, streamLines),
		ours: s.dist("ours").String() + " MB/s from the first printed byte to the step's end; peak RSS " + rss.String() + " MiB; " +
			"the whole step, the stub's ssh hop to the target included: " + s.dist("ours-step").String() + " MB/s",
		ref:  "`ssh runner cat` to /dev/null, less its connection set-up (`ssh runner true` in the same iteration): " + s.dist("ref").String() + " MB/s; the whole command: " + s.dist("ref-whole").String() + " MB/s",
		res:  "throughput ratio " + ratio.String() + " (whole step against whole command: " + s.dist("ratio-whole").String() + ")",
		goal: "ratio ≥ 0.9; peak RSS ≤ 64 MB",
		met:  mark(ratio.med >= 0.9 && rss.med*1.048576 <= 64),
	}.write(b)
}

// writeBuildLog writes lines of exactly size bytes (newline included) that
// look like a Nix build log.
func writeBuildLog(b *testing.B, path string, lines, size int) int64 {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	pad := strings.Repeat(".", size)
	var written int64
	for i := range lines {
		text := fmt.Sprintf("building '/nix/store/%032d-python3.12-pkg-%d.drv' on 'ssh://root@runner' (line %d) ", i, i%97, i+1)
		text = (text + pad)[:size-1] + "\n"
		n, _ := w.WriteString(text)
		written += int64(n)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return written
}
