package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy/db"
	"github.com/nixdeploy/nixdeploy/internal/slackfake"
)

const (
	testBotToken = "xoxb-1111-2222-serve-test-token"
	testSecret   = "serve-test-signing-secret-0123456789"
	testAppToken = "xapp-1-A0FAKE0001-3333-serve-test"
)

const serveFleet = `
flake = "/srv/dots/nix"
installer_flake = "/srv/dots/nix/nixos-installer"

[runner]
address = "builder@runner.invalid:22"
host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGTrdkayN6vx4WZslAz+0maaFv3awOTiXbI87EfzNhUW runner"

[slack]
channel = "C0FLEET01"
deployers = ["U0ALICE01"]
approvers = ["U0ALICE01", "U0BOB0001"]
destructive = true

[[hosts]]
name = "ganon"
address = "192.0.2.10"
system = "x86_64-linux"
disk = "/dev/nvme0n1"

[[hosts]]
name = "rk1-node1"
address = "192.0.2.11"
system = "aarch64-linux"
disk = "/dev/mmcblk0"
`

func writeFleet(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "nixdeploy.toml")
	if err := os.WriteFile(p, []byte(serveFleet), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestServeNeedsTokens: missing or malformed credentials stop serve with
// one clear line, before anything else happens.
func TestServeNeedsTokens(t *testing.T) {
	cfg := writeFleet(t)
	for _, tc := range []struct {
		name                  string
		bot, secret, app, msg string
	}{
		{"nothing", "", "", "", "SLACK_BOT_TOKEN is not set"},
		{"no secret, no app token", testBotToken, "", "", "SLACK_SIGNING_SECRET is not set"},
		{"user token", "xoxp-123", testSecret, "", "must start with xoxb-"},
		{"bad app token", testBotToken, "", "xoxb-wrong", "must start with xapp-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(envBotToken, tc.bot)
			t.Setenv(envSigningSecret, tc.secret)
			t.Setenv(envAppToken, tc.app)
			var stderr strings.Builder
			code := exitCode(run(t.Context(), []string{"serve", "--config", cfg}, strings.NewReader(""), io.Discard, &stderr), &stderr)
			if code != 1 || !strings.Contains(stderr.String(), tc.msg) {
				t.Errorf("exit %d, stderr %q, want 1 and %q", code, stderr.String(), tc.msg)
			}
			for _, secret := range []string{testBotToken, testSecret, "xoxp-123", "xoxb-wrong"} {
				if strings.Contains(stderr.String(), secret) {
					t.Errorf("stderr leaks a credential: %q", stderr.String())
				}
			}
		})
	}
}

// serveRun starts serve against the fake Slack and returns its address
// and a function that stops it and returns everything it logged.
func serveRun(t *testing.T, fake *slackfake.Server, env map[string]string, args ...string) (addr string, stop func() string) {
	t.Helper()
	t.Setenv("NIXDEPLOY_DB", filepath.Join(t.TempDir(), "nixdeploy.db"))
	t.Setenv(envSlackAPIURL, fake.APIURL())
	t.Setenv("NIXDEPLOY_SSH_KEY", "")
	t.Setenv(envSigningSecret, "")
	t.Setenv(envAppToken, "")
	t.Setenv(envBackupDir, "")
	for k, v := range env {
		t.Setenv(k, v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	var mu sync.Mutex
	var logged strings.Builder
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		re := regexp.MustCompile(`serving Slack \(\w+ mode\) on (\S+)`)
		for sc.Scan() {
			mu.Lock()
			logged.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addrc <- m[1]
			}
		}
	}()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"serve", "--config", writeFleet(t), "--listen", "127.0.0.1:0"}, args...), strings.NewReader(""), io.Discard, pw)
	}()
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatalf("serve ended early: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not start listening")
	}
	return addr, func() string {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve returned %v", err)
		}
		pw.Close()
		mu.Lock()
		defer mu.Unlock()
		return logged.String()
	}
}

// TestServeHTTP runs the real serve command in HTTP mode: /healthz,
// a signed slash command with its ephemeral ack and reply, a forged one,
// and a clean shutdown. No credential appears in the log.
func TestServeHTTP(t *testing.T) {
	fake := slackfake.New(slackfake.Options{BotToken: testBotToken})
	defer fake.Close()
	addr, stop := serveRun(t, fake, map[string]string{envBotToken: testBotToken, envSigningSecret: testSecret})

	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Errorf("/healthz = %d %q", resp.StatusCode, body)
	}

	send := &slackfake.Sender{BaseURL: "http://" + addr, Secret: testSecret}
	r, err := send.Slash(t.Context(), slackfake.SlashCommand{UserID: "U0ALICE01", ChannelID: "C0FLEET01", Text: "status"})
	if err != nil {
		t.Fatal(err)
	}
	var ack struct{ ResponseType, Text string }
	json.Unmarshal(r.Body, &ack)
	if r.Status != 200 || ack.Text != "`/nixdeploy status`" {
		t.Errorf("slash ack = %d %s", r.Status, r.Body)
	}
	forged := &slackfake.Sender{BaseURL: "http://" + addr, Secret: "wrong"}
	if r, err := forged.Slash(t.Context(), slackfake.SlashCommand{UserID: "U0ALICE01", Text: "status"}); err != nil || r.Status != 401 {
		t.Errorf("forged slash: %v %d", err, r.Status)
	}
	waitFor(t, fake, func() bool { return len(fake.Calls("chat.postEphemeral")) == 1 })

	logged := stop()
	if !strings.Contains(logged, "slack bot identified") || !strings.Contains(logged, "slack request refused") {
		t.Errorf("log lacks startup or the refused request:\n%s", logged)
	}
	for _, secret := range []string{testBotToken, testSecret, "1111-2222"} {
		if strings.Contains(logged, secret) {
			t.Errorf("the log contains a credential:\n%s", logged)
		}
	}
	if c := fake.Calls("auth.test"); len(c) != 1 || c[0].Token != testBotToken {
		t.Errorf("auth.test calls: %+v", c)
	}
}

// TestServeSocketMode: with an app-level token, serve takes Slack's
// envelopes over Socket Mode, acks the slash command with the same echo,
// and still answers /healthz.
func TestServeSocketMode(t *testing.T) {
	fake := slackfake.New(slackfake.Options{BotToken: testBotToken, AppToken: testAppToken})
	defer fake.Close()
	addr, stop := serveRun(t, fake, map[string]string{envBotToken: testBotToken, envAppToken: testAppToken})
	defer stop()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := fake.WaitSocket(ctx); err != nil {
		t.Fatal(err)
	}
	ack, err := fake.SocketSlash(ctx, slackfake.SlashCommand{UserID: "U0ALICE01", ChannelID: "C0FLEET01", Text: "help"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ack), "`/nixdeploy help`") || !strings.Contains(string(ack), `"ephemeral"`) {
		t.Errorf("socket ack payload = %s", ack)
	}
	waitFor(t, fake, func() bool { return len(fake.Calls("chat.postEphemeral")) == 1 })
	if r, err := http.Get("http://" + addr + "/healthz"); err != nil || r.StatusCode != 200 {
		t.Errorf("/healthz in socket mode: %v", err)
	}
	// HTTP endpoints are not served in Socket Mode.
	send := &slackfake.Sender{BaseURL: "http://" + addr, Secret: testSecret}
	if r, err := send.Slash(ctx, slackfake.SlashCommand{UserID: "U0ALICE01", Text: "help"}); err != nil || r.Status == 200 {
		t.Errorf("HTTP slash in socket mode: %v %d", err, r.Status)
	}
}

// waitFor polls the fake, woken by each call it records, until ok holds.
func waitFor(t *testing.T, fake *slackfake.Server, ok func() bool) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		ch := fake.Changed()
		if ok() {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatal("the fake Slack was not called as expected")
		}
	}
}

// TestServeOperations: /readyz once serve is ready, /metrics after a
// deployment ended and with an approval pending, and the daily backup,
// which restore puts back.
func TestServeOperations(t *testing.T) {
	fake := slackfake.New(slackfake.Options{BotToken: testBotToken})
	defer fake.Close()
	backups := filepath.Join(t.TempDir(), "backups")
	addr, stop := serveRun(t, fake, map[string]string{envBotToken: testBotToken, envSigningSecret: testSecret, envBackupDir: backups},
		"--shutdown-grace", "5s", "--backup-keep", "2")
	base := "http://" + addr

	if code, body := httpGet(t, base+"/readyz"); code != 200 || body != "database: ok\nslack: ok\nschedules: ok\n" {
		t.Errorf("/readyz = %d %q", code, body)
	}
	send := &slackfake.Sender{BaseURL: base, Secret: testSecret}
	slash := func(text string) {
		if r, err := send.Slash(t.Context(), slackfake.SlashCommand{UserID: "U0ALICE01", ChannelID: "C0FLEET01", Text: text}); err != nil || r.Status != 200 {
			t.Fatalf("slash %s: %v", text, err)
		}
	}
	var metrics string
	scrapeUntil := func(want string) {
		waitFor(t, fake, func() bool {
			_, metrics = httpGet(t, base+"/metrics")
			return strings.Contains(metrics, want)
		})
	}
	// Without an SSH key the switch fails; the install waits for an
	// approval.
	slash("switch ganon")
	slash("install rk1-node1")
	scrapeUntil(`nixdeploy_deployments_total{action="switch",outcome="failed"} 1`)
	scrapeUntil("nixdeploy_pending_approvals 1")
	for _, want := range []string{`nixdeploy_deployment_duration_seconds_count{action="switch"} 1`, "# TYPE nixdeploy_deployment_duration_seconds histogram", "process_start_time_seconds"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if list, _ := db.Backups(backups); len(list) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no backup was written at start")
		}
		<-tick.C
	}
	logged := stop()
	if !strings.Contains(logged, "database backed up") {
		t.Errorf("the backup is not logged:\n%s", logged)
	}
	restored := filepath.Join(t.TempDir(), "restored.db")
	var out strings.Builder
	if err := run(t.Context(), []string{"restore", "--latest", "--dir", backups, "--db", restored}, strings.NewReader(""), &out, io.Discard); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if !strings.Contains(out.String(), "restored "+restored+" from "+backups) {
		t.Errorf("restore said %q", out.String())
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestServeDropsSlowClients: the real serve closes a client that trickles
// its body, and answers a signed command meanwhile.
func TestServeDropsSlowClients(t *testing.T) {
	fake := slackfake.New(slackfake.Options{BotToken: testBotToken})
	defer fake.Close()
	addr, stop := serveRun(t, fake, map[string]string{envBotToken: testBotToken, envSigningSecret: testSecret})
	defer stop()
	var slow []net.Conn
	for range 8 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "POST /slack/commands HTTP/1.1\r\nHost: x\r\nX-Slack-Request-Timestamp: 1\r\nX-Slack-Signature: v0=00\r\nContent-Length: 100\r\n\r\nt")
		slow = append(slow, c)
	}
	send := &slackfake.Sender{BaseURL: "http://" + addr, Secret: testSecret}
	if r, err := send.Slash(t.Context(), slackfake.SlashCommand{UserID: "U0ALICE01", ChannelID: "C0FLEET01", Text: "status"}); err != nil || r.Status != 200 {
		t.Fatalf("signed slash during the slow clients: %v", err)
	}
	for _, c := range slow {
		_ = c.SetReadDeadline(time.Now().Add(6 * time.Second))
		if _, err := io.Copy(io.Discard, c); errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("serve kept a slow client's connection open for 6 s")
		}
		c.Close()
	}
}

// TestServeSlackUnreachable: serve gives up on a Slack that never answers
// within --slack-timeout, and says whether the token was refused or Slack
// could not be reached, in one line without the token (issue 15, attack 7).
func TestServeSlackUnreachable(t *testing.T) {
	hang := make(chan struct{})
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer silent.Close()
	defer close(hang)
	refusing := slackfake.New(slackfake.Options{BotToken: "xoxb-some-other-token"})
	defer refusing.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + ln.Addr().String() + "/api/"
	ln.Close()

	for _, tc := range []struct{ name, url, want, not string }{
		{"never answers", silent.URL + "/api/", "Slack did not answer auth.test within 300ms", "refused"},
		{"refuses the token", refusing.APIURL(), "Slack refused SLACK_BOT_TOKEN (invalid_auth)", "network"},
		{"connection refused", closedURL, "could not reach Slack", "refused SLACK_BOT_TOKEN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("NIXDEPLOY_DB", filepath.Join(t.TempDir(), "nixdeploy.db"))
			t.Setenv(envSlackAPIURL, tc.url)
			t.Setenv(envBotToken, testBotToken)
			t.Setenv(envSigningSecret, testSecret)
			t.Setenv(envAppToken, "")
			var stderr strings.Builder
			done := make(chan int, 1)
			go func() {
				err := run(t.Context(), []string{"serve", "--config", writeFleet(t), "--listen", "127.0.0.1:0", "--slack-timeout", "300ms"}, strings.NewReader(""), io.Discard, &stderr)
				done <- exitCode(err, &stderr)
			}()
			select {
			case code := <-done:
				out := stderr.String()
				if code != 1 || !strings.Contains(out, tc.want) || strings.Contains(out, tc.not) || strings.Contains(out, testBotToken) {
					t.Errorf("exit %d, stderr %q, want %q and not %q", code, out, tc.want, tc.not)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("serve hangs on a Slack that does not answer")
			}
		})
	}
}
