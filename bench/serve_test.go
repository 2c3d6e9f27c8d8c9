package bench_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy/internal/slackfake"
)

// idleFor is how long serve is left alone after it is ready before its
// resident set is read.
const idleFor = 1500 * time.Millisecond

// BenchmarkRow5Serve starts `nixdeploy serve` with the example fleet as a
// process of its own, against the fake Slack with dummy tokens and a fresh
// database, and times it from the start of the process until /readyz
// answers 200; then, once it has been idle for a moment, it reads the
// process's VmRSS.
func BenchmarkRow5Serve(b *testing.B) {
	bin := binary(b, envNixdeploy, "github.com/nixdeploy/nixdeploy/cmd/nixdeploy")
	fake := slackfake.New(slackfake.Options{BotToken: benchToken})
	defer fake.Close()
	cfg, err := filepath.Abs(exampleFleet)
	if err != nil {
		b.Fatal(err)
	}
	s := samples{}
	probe := "/readyz"
	for b.Loop() {
		ready, rss, path := serveOnce(b, bin, cfg, fake, probe)
		probe = path
		s.add("ready", ready.Seconds()*1000)
		s.add("rss", rss)
	}
	s.enough(b, "ready")
	ready, rss := s.dist("ready"), s.dist("rss")
	b.ReportMetric(ready.med, "ready-ms")
	b.ReportMetric(rss.med, "idle-rss-MiB")
	what := "`nixdeploy serve`, example fleet, dummy tokens, fake Slack: start until " + probe + " is 200, then idle RSS"
	if probe != "/readyz" {
		what += " (this build has no /readyz)"
	}
	row{
		n:    5,
		what: what,
		ours: "idle RSS " + rss.String() + " MiB; ready in " + ready.String() + " ms",
		ref:  "—",
		res:  "RSS " + num(rss.med) + " MiB; " + num(ready.med) + " ms",
		goal: "≤ 30 MB; ≤ 300 ms",
		met:  mark(rss.med*1.048576 <= 30 && ready.med <= 300),
	}.write(b)
}

// serveOnce runs serve until it is ready and idle, and returns the time to
// ready, the idle RSS in MiB and the probe path it used: /readyz, or
// /healthz when this build answers /readyz with 404.
func serveOnce(b *testing.B, bin, cfg string, fake *slackfake.Server, probe string) (time.Duration, float64, string) {
	b.Helper()
	dir := b.TempDir()
	addr := freeAddr(b)
	cmd := exec.Command(bin, "serve", "--config", cfg, "--listen", addr)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dir,
		"SLACK_BOT_TOKEN=" + benchToken,
		"SLACK_SIGNING_SECRET=" + benchSecret,
		"NIXDEPLOY_SLACK_API_URL=" + fake.APIURL(),
		"NIXDEPLOY_DB=" + filepath.Join(dir, "nixdeploy.db"),
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	client := &http.Client{Timeout: time.Second}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}()

	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for {
		code, err := get(client, "http://"+addr+probe)
		if err == nil && code == http.StatusNotFound && probe == "/readyz" {
			probe = "/healthz"
			continue
		}
		if err == nil && code == http.StatusOK {
			break
		}
		select {
		case err := <-exited:
			b.Fatalf("serve exited before it was ready: %v\n%s", err, stderr.String())
		case <-deadline:
			b.Fatalf("serve not ready after 30s\n%s", stderr.String())
		case <-tick.C:
		}
	}
	ready := time.Since(start)
	select {
	case err := <-exited:
		b.Fatalf("serve exited: %v\n%s", err, stderr.String())
	case <-time.After(idleFor):
	}
	rss, err := statusKiB(cmd.Process.Pid, "VmRSS:")
	if err != nil {
		b.Fatal(err)
	}
	return ready, float64(rss) / 1024, probe
}

func get(c *http.Client, url string) (int, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// statusKiB reads a kB field of /proc/<pid>/status.
func statusKiB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, errors.New("no " + field + " in /proc/" + strconv.Itoa(pid) + "/status")
}
