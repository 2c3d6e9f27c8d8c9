package bmc_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/bmc"
	"github.com/nixdeploy/nixdeploy/internal/bmcfake"
)

// node is a fake node behind the fake BMC: it comes back after a reset
// only if comesBack, and WaitUp sees it through a channel, not a sleep.
type node struct {
	comesBack bool
	verifyErr error
	mu        sync.Mutex
	up        chan struct{}
	resets    int
}

func (n *node) onReset(f **bmcfake.BMC) func(int) {
	return func(slot int) {
		n.mu.Lock()
		defer n.mu.Unlock()
		n.resets++
		if n.comesBack {
			close(n.up)
			(*f).WriteUART(slot, "rk1-node3 login: \r\n")
		} else {
			(*f).WriteUART(slot, "Kernel panic - not syncing: VFS: Unable to mount root fs\r\n")
		}
	}
}

func (n *node) WaitUp(ctx context.Context, host string) error {
	select {
	case <-n.up:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (n *node) Verify(ctx context.Context, host string) error { return n.verifyErr }

func recoveryFleet(t *testing.T, n *node) (*bmc.Fleet, *bmcfake.BMC) {
	t.Helper()
	var f *bmcfake.BMC
	f = newFake(t, bmcfake.Options{Power: [4]bool{true, true, true, true}, OnReset: n.onReset(&f)})
	cfg, err := nixdeploy.ParseConfig(t.TempDir()+"/c.toml", []byte(`flake = "/f"
installer_flake = "/f/i"
[[hosts]]
name = "rk1-node3"
address = "192.0.2.13"
system = "aarch64-linux"
disk = "/dev/mmcblk0"
bmc = "turingpi"
bmc_node = 3
[[bmcs]]
name = "turingpi"
address = "`+f.Address()+`"
user = "root"
cert_sha256 = "`+nixdeploy.FormatFingerprint(f.Fingerprint())+`"
`))
	if err != nil {
		t.Fatal(err)
	}
	fleet, err := bmc.NewFleet(cfg, bmc.FleetOptions{Getenv: func(string) string { return password }})
	if err != nil {
		t.Fatal(err)
	}
	f.WriteUART(3, "[  OK  ] Reached target Multi-User System.\r\nnvme: I/O timeout\r\n")
	return fleet, f
}

func TestRecoverySucceeds(t *testing.T) {
	n := &node{comesBack: true, up: make(chan struct{})}
	fleet, _ := recoveryFleet(t, n)
	r := bmc.NewRecovery(bmc.RecoveryOptions{Board: fleet, Reacher: n, Reset: true})
	out := r.Recover(t.Context(), "rk1-node3")
	if !out.Recovered || !out.Reset || out.Err != nil {
		t.Fatalf("outcome %+v", out)
	}
	if !strings.Contains(strings.Join(out.Console, "\n"), "nvme: I/O timeout") {
		t.Errorf("console tail %q lacks what the node printed when it hung", out.Console)
	}
	if got := out.Summary(); got != "rk1-node3 recovered after a power reset through its BMC" {
		t.Errorf("summary %q", got)
	}
	// A second failure in the same run is not reset again.
	again := r.Recover(t.Context(), "rk1-node3")
	if again.Reset || !errors.Is(again.Err, bmc.ErrResetUsed) || n.resets != 1 {
		t.Errorf("second recovery %+v after %d resets, want no second reset", again, n.resets)
	}
}

func TestRecoveryFails(t *testing.T) {
	n := &node{comesBack: false, up: make(chan struct{})}
	fleet, _ := recoveryFleet(t, n)
	r := bmc.NewRecovery(bmc.RecoveryOptions{Board: fleet, Reacher: n, Reset: true, BootTimeout: 50 * time.Millisecond})
	out := r.Recover(t.Context(), "rk1-node3")
	if out.Recovered || !out.Reset || !errors.Is(out.Err, context.DeadlineExceeded) {
		t.Fatalf("outcome %+v", out)
	}
	// The tail is the one after the reset: why it did not come back.
	if !strings.Contains(strings.Join(out.Console, "\n"), "Kernel panic") {
		t.Errorf("console tail %q lacks the boot after the reset", out.Console)
	}
	if s := out.Summary(); !strings.HasPrefix(s, "rk1-node3 is still down after a power reset: did not come back within 50ms") {
		t.Errorf("summary %q", s)
	}
	if n.resets != 1 {
		t.Errorf("%d resets, want 1", n.resets)
	}
}

func TestRecoveryVerifyFails(t *testing.T) {
	n := &node{comesBack: true, up: make(chan struct{}), verifyErr: errors.New("2 failed units")}
	fleet, _ := recoveryFleet(t, n)
	out := bmc.NewRecovery(bmc.RecoveryOptions{Board: fleet, Reacher: n, Reset: true}).Recover(t.Context(), "rk1-node3")
	if out.Recovered || !out.Reset || !strings.Contains(out.Summary(), "came back but failed verification: 2 failed units") {
		t.Errorf("outcome %+v, summary %q", out, out.Summary())
	}
}

func TestRecoveryWithoutReset(t *testing.T) {
	n := &node{up: make(chan struct{})}
	fleet, f := recoveryFleet(t, n)
	out := bmc.NewRecovery(bmc.RecoveryOptions{Board: fleet, Reacher: n}).Recover(t.Context(), "rk1-node3")
	if out.Reset || !errors.Is(out.Err, bmc.ErrNoReset) || len(out.Console) != 2 {
		t.Errorf("outcome %+v", out)
	}
	for _, r := range f.Requests() {
		if r.Query.Get("type") == "reset" {
			t.Error("a reset was sent although the schedule does not allow it")
		}
	}
	if !strings.Contains(out.ConsoleBlock(), "serial console of rk1-node3, last lines:\n[  OK  ] Reached target") {
		t.Errorf("console block %q", out.ConsoleBlock())
	}
}
