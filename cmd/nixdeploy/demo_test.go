package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/db"
)

// realMainEnv makes the test binary run main, as the nixdeploy binary.
const realMainEnv = "NIXDEPLOY_TEST_REAL_MAIN"

func writeScript(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "script.txt")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// inOrder fails unless each of wants occurs in out after the previous one.
func inOrder(t *testing.T, out string, wants ...string) {
	t.Helper()
	at := 0
	for _, w := range wants {
		i := strings.Index(out[at:], w)
		if i < 0 {
			if strings.Contains(out, w) {
				t.Errorf("%q occurs, but not after %q", w, out[max(0, at-80):at])
			} else {
				t.Errorf("output lacks %q", w)
			}
			continue
		}
		at += i + len(w)
	}
}

// TestDemoScript runs the demo on a script and checks the whole story:
// the approval gate (nothing runs before a second person approves; the
// requester's own approval is refused), the streamed install phases, the
// rolling halt at the broken node, and what the database recorded.
func TestDemoScript(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "demo.db")
	script := writeScript(t, `# The tour, with a status check while the install waits.
/nixdeploy rk1-node3
/nixdeploy install ganon
:white_check_mark:
/nixdeploy status ganon
echo BOB approves now
:white_check_mark: as BOB
/nixdeploy schedule run nightly-rk1
wait
echo the board
/nixdeploy status
/nixdeploy schedule run canary-rk1
wait
`)
	var stdout, stderr strings.Builder
	err := run(t.Context(), []string{"demo", "--script", script, "--pace", "0", "--db", dbPath}, strings.NewReader(""), &stdout, &stderr)
	out := stdout.String()
	if err != nil {
		t.Fatalf("demo: %v\nstderr:\n%s\nstdout:\n%s", err, stderr.String(), out)
	}
	if stderr.Len() > 0 {
		t.Errorf("stderr: %s", stderr.String())
	}

	// 1. The switch streams and succeeds.
	// The console prints a command's echo once the command returned, so
	// the bot's first message may come before it.
	for _, echo := range []string{"> @ALICE: `/nixdeploy switch rk1-node3`", "> @ALICE: `/nixdeploy install ganon`", "schedule nightly-rk1 run #1 started by @ALICE"} {
		if !strings.Contains(out, echo) {
			t.Errorf("output lacks %q", echo)
		}
	}
	inOrder(t, out, "*#1 switch rk1-node3* — running", "*#1 switch rk1-node3* — succeeded",
		"file nixdeploy-1-switch.log", "nixos-rebuild stderr: building the system configuration...", "rk1-node3 is running /nix/store/")
	// 2. The approval gate.
	inOrder(t, out, "Approval needed: #2 install ganon", "• Disk that will be *wiped*: `/dev/nvme0n1`",
		"> @ALICE reacted :white_check_mark:", "You requested this, so someone else must approve it",
		"*Fleet status* — Drift board:", "#2 install awaiting-approval",
		"BOB approves now", "> @BOB reacted :white_check_mark:", "*Approved* by @BOB",
		"*#2 install ganon* — running")
	if i, j := strings.Index(out, "#2 install ganon* — running"), strings.Index(out, "*Approved* by @BOB"); i < j {
		t.Error("the install ran before BOB approved it")
	}
	// 3. The install, phase by phase, into the thread.
	// Only stdout is in order: a command's stdout and stderr are read
	// apart, as from any real command.
	for _, want := range []string{"*At boot:* ganon: LUKS; its passphrase", "• Commit: `", "• Disks the flake's disko config formats: `main=/dev/nvme0n1`", "--disk-encryption-keys /tmp/secret.key /tmp/tmp."} {
		if !strings.Contains(out, want) {
			t.Errorf("the install lacks %q", want)
		}
	}
	if !strings.Contains(out, "nixos-anywhere stderr: + cryptsetup -q luksFormat") {
		t.Error("the log lacks disko's cryptsetup trace")
	}
	inOrder(t, out, "*#2 install ganon* — succeeded", "*Phases:* ✓ kexec → ✓ disko → ✓ install → ✓ reboot",
		"file nixdeploy-2-install.log", "preflight event: host key SHA256:", "mktemp -d",
		"### Uploading install SSH keys ###", "### Switching system into kexec ###", "### Formatting hard drive with disko ###",
		"### Installing NixOS ###", "Found Windows Boot Manager", "### Rebooting ###", "### Done! ###",
		"remove-keys on runner: rm -rf -- /tmp/tmp.", "ganon is up and presents its pinned host key",
		"nixos-rebuild switch --flake 'git+file:///home/michael/dots/nix?rev=", "ganon is running /nix/store/",
		"remove-tmp on runner: rm -rf -- /tmp/tmp.")
	// 4. rk1-node1 hangs after its switch; the run attaches its serial
	// console, resets it through the (fake) BMC, and it comes back.
	inOrder(t, out, "*#3 switch rk1-node1* — succeeded", "file nixdeploy-3-switch.log",
		"Done. The new configuration is /nix/store/",
		"rk1-node1 verify event: verify failed", "rk1-node1 cannot be reached after step verify; reading its serial console through the BMC turingpi (slot 1)",
		"console| [ 8144.422316] watchdog: BUG: soft lockup - CPU#2 stuck for 22s! [systemd:1]",
		"power-cycled rk1-node1 through the BMC (it is on now)", "rk1-node1 is up and presents its pinned host key",
		"rk1-node1 recovered after a power reset through its BMC and passed verification",
		"deployment 3 finished: succeeded: rk1-node1; rk1-node1 recovered after a power reset")
	// 4. The rolling run halts at rk1-node2 and leaves the rest alone.
	inOrder(t, out, "*#3 switch rk1-node1* — succeeded",
		"*#4 switch rk1-node2* — failed", "*Failing step:* `nixos-rebuild` on rk1-node2 · *exit code* 1", "has conflicting definition values",
		"❌ *nightly-rk1* (switch) failed: halted: rk1-node2 failed", "✅ rk1-node1", "`: recovered after a power reset", "❌ rk1-node2",
		"⏭ rk1-node3 not touched (halted after rk1-node2)", "⏭ rk1-node4 not touched (halted after rk1-node2)")
	// 5. The drift board: one drifted host (rk1-node4, left alone by the
	// halted run), rk1-node2 unknown (its configuration does not
	// evaluate), the switched hosts in line and waiting for a reboot.
	board := out[strings.LastIndex(out, "*Fleet status*"):]
	inOrder(t, board, "Drift board: 1 drifted, 1 unknown, 3 reboot pending of 5 hosts (flake at 5f3c9a1e7b2d", "host ", "running", "booted", "expected", "drift", "last deployment", "locks", "read (UTC)")
	rowOf := func(host string) string {
		for _, l := range strings.Split(board, "\n") {
			if strings.HasPrefix(l, "  "+host+"  ") {
				return l
			}
		}
		t.Errorf("the board has no row for %s:\n%s", host, board)
		return ""
	}
	for host, want := range map[string][]string{
		"ganon":     {"(reboot pending)", "  no  ", "#2 install succeeded at 5f3c9a1e7b2d"},
		"rk1-node1": {"(reboot pending)", "  no  ", "#3 switch succeeded"},
		"rk1-node2": {"unknown: nixosConfigurations.rk1-node2 does not evaluate at revision 5f3c9a1e7b2d: The option `fileSystems.\"/\".device' has conflicting definition values:", "#4 switch failed"},
		"rk1-node3": {"(reboot pending)", "  no  ", "#1 switch succeeded"},
		"rk1-node4": {"  yes  ", "never"},
	} {
		row := rowOf(host)
		for _, w := range want {
			if !strings.Contains(row, w) {
				t.Errorf("%s's row lacks %q:\n%s", host, w, row)
			}
		}
	}
	// 6. The canary night: rk1-node4 goes first under the guard, fails
	// its health check, is rolled back by its guard, and no other node
	// is touched.
	inOrder(t, out, "*#5 switch rk1-node4* — running",
		"arm-guard stdout: guard nixdeploy-guard-5 armed for 3s", "nixos-rebuild test --fast --flake",
		"check unit prometheus-node-exporter.service failed: failed",
		"not disarming the guard", "rolled back by the guard: rk1-node4 runs /nix/store/")
	inOrder(t, out, "*#5 switch rk1-node4* — failed",
		"❌ *canary-rk1* (switch) failed: The canary rk1-node4 failed, so none of the other 3 hosts was touched.",
		"❌ rk1-node4", "rk1-node4 was rolled back by the guard and runs its previous system again",
		"⏭ rk1-node1 not touched (the canary rk1-node4 failed)", "⏭ rk1-node3 not touched (the canary rk1-node4 failed)",
		"done; 5 deployments recorded in "+dbPath)
	if strings.Contains(out, "#6 ") {
		t.Error("a sixth deployment was started")
	}
	// The failed host's line in the channel summary is a sentence for
	// people, never the deployer's Go error chain (issue 13: the
	// deployer's Finish used to win over the bot's).
	summary := out[strings.Index(out, "❌ *nightly-rk1*"):]
	line, _, _ := strings.Cut(summary[strings.Index(summary, "❌ rk1-node2"):], "\n")
	if !strings.Contains(line, "step nixos-rebuild on rk1-node2 failed with exit code 1") ||
		strings.Contains(line, "failed: exited") || strings.Contains(line, "last output") {
		t.Errorf("the summary's failed host is not one sentence for people: %q", line)
	}

	// The database, opened afterwards, says the same.
	store, interrupted, err := db.Open(t.Context(), dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if len(interrupted) > 0 {
		t.Errorf("deployments left running: %+v", interrupted)
	}
	deps, err := store.Deployments(t.Context(), "", 10)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64]string{1: "switch rk1-node3 succeeded", 2: "install ganon succeeded", 3: "switch rk1-node1 succeeded", 4: "switch rk1-node2 failed", 5: "switch rk1-node4 failed"}
	if len(deps) != len(want) {
		t.Fatalf("%d deployments stored, want %d", len(deps), len(want))
	}
	for _, d := range deps {
		if got := string(d.Action) + " " + strings.Join(d.Hosts, ",") + " " + string(d.State); got != want[d.ID] {
			t.Errorf("deployment %d: %s, want %s", d.ID, got, want[d.ID])
		}
		if d.ID == 4 && strings.Contains(d.Error, "last output") {
			t.Errorf("deployment 4 recorded the deployer's error chain, not the sentence people saw: %q", d.Error)
		}
	}
	audit, err := store.AuditTrail(t.Context(), 2)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range audit {
		kinds = append(kinds, e.Actor+":"+e.Kind)
	}
	inOrder(t, strings.Join(kinds, " "), "ALICE:requested", "nixdeploy:approval-posted", "ALICE:approval-refused-self", "BOB:approved", "nixdeploy:started", "nixdeploy:succeeded")
	var disko bool
	store.EachLog(t.Context(), 2, func(l nixdeploy.LogLine) error {
		disko = disko || l.Text == "### Formatting hard drive with disko ###"
		return nil
	})
	if !disko {
		t.Error("the stored log of the install lacks the disko phase")
	}
	if sys, _, err := store.CurrentSystem(t.Context(), "ganon"); err != nil || !strings.Contains(sys, "-nixos-system-ganon-") {
		t.Errorf("current system of ganon: %q, %v", sys, err)
	}
	runs, err := store.ScheduleRuns(t.Context(), "nightly-rk1", 5)
	if err != nil || len(runs) != 1 {
		t.Fatalf("schedule runs: %+v, %v", runs, err)
	}
	var hosts []string
	for _, h := range runs[0].Hosts {
		hosts = append(hosts, h.Host+"="+string(h.Outcome))
	}
	if got := string(runs[0].Outcome) + " " + strings.Join(hosts, " "); got != "failed rk1-node1=succeeded rk1-node2=failed rk1-node3=untouched rk1-node4=untouched" {
		t.Errorf("schedule run: %s", got)
	}
	canary, err := store.ScheduleRuns(t.Context(), "canary-rk1", 5)
	if err != nil || len(canary) != 1 {
		t.Fatalf("canary runs: %+v, %v", canary, err)
	}
	hosts = nil
	for _, h := range canary[0].Hosts {
		hosts = append(hosts, h.Host+"="+string(h.Outcome))
	}
	if got := string(canary[0].Outcome) + " " + strings.Join(hosts, " "); got != "failed rk1-node4=failed rk1-node1=untouched rk1-node2=untouched rk1-node3=untouched" {
		t.Errorf("canary run: %s", got)
	}
}

// TestDemoSIGTERM runs nixdeploy as a real process and sends it SIGTERM
// while a switch runs: after the grace period the deployment is recorded,
// shown and announced as interrupted (never left running, never called
// cancelled); one that finishes within the grace period succeeds.
func TestDemoSIGTERM(t *testing.T) {
	for _, tc := range []struct {
		name, pace, grace, state, shown string
	}{
		{"interrupted after the grace period", "1s", "100ms", "interrupted", "*#1 switch rk1-node3* — interrupted after"},
		{"finished within the grace period", "20ms", "1m", "succeeded", "*#1 switch rk1-node3* — succeeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dbPath := filepath.Join(t.TempDir(), "demo.db")
			script := writeScript(t, "/nixdeploy rk1-node3\n")
			cmd, stdout := startReal(t, "demo", "--script", script, "--pace", tc.pace, "--shutdown-grace", tc.grace, "--db", dbPath)
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			err := waitReal(t, cmd)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 130 {
				t.Errorf("exit: %v, want status 130", err)
			}
			out := <-stdout
			if !strings.Contains(out, tc.shown) {
				t.Errorf("stdout lacks %q:\n%s", tc.shown, out)
			}
			notice := strings.Contains(out, "nixdeploy is shutting down and interrupted #1 switch rk1-node3")
			if notice != (tc.state == "interrupted") {
				t.Errorf("shutdown notice shown: %v\n%s", notice, out)
			}

			store, left, err := db.Open(t.Context(), dbPath)
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			if len(left) > 0 {
				t.Errorf("left running: %+v", left)
			}
			d, err := store.Deployment(t.Context(), 1)
			if err != nil || string(d.State) != tc.state {
				t.Errorf("deployment 1: %s (%q), %v; want %s", d.State, d.Error, err, tc.state)
			}
		})
	}
}

// startReal starts this test binary as nixdeploy with args, and returns
// once the deployment's nixos-rebuild step started, as its log says. The
// channel yields everything it printed to stdout once it exits.
func startReal(t *testing.T, args ...string) (*exec.Cmd, <-chan string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append(args, "-v")...)
	cmd.Env = append(os.Environ(), realMainEnv+"=1", "GORACE=atexit_sleep_ms=0", "NIXDEPLOY_LOG_FORMAT=json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdoutPipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	stdout := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(stdoutPipe)
		stdout <- string(b)
	}()
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			if l := sc.Text(); !once && strings.Contains(l, `"msg":"step started"`) && strings.Contains(l, `"step":"nixos-rebuild"`) {
				once = true
				close(started)
			}
		}
	}()
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("nixos-rebuild did not start")
	}
	return cmd, stdout
}

func waitReal(t *testing.T, cmd *exec.Cmd) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		t.Fatal("nixdeploy did not exit after SIGTERM")
		return nil
	}
}
