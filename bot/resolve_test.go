package bot_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/bot"
	"github.com/nixdeploy/nixdeploy/db"
)

// resolvingDeployer is the fake deployer plus what the real one offers
// before an approval: the lock and a digest of the steps.
type resolvingDeployer struct {
	*fakeDeployer
	mu       sync.Mutex
	lock     *nixdeploy.Lock
	err      error
	fp       string
	unlocked []string
}

func (r *resolvingDeployer) Resolve(_ context.Context, dep nixdeploy.Deployment) (*nixdeploy.Lock, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return nil, r.err
	}
	l := *r.lock
	return &l, nil
}

func (r *resolvingDeployer) Fingerprint(dep nixdeploy.Deployment) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rev := ""
	if dep.Lock != nil {
		rev = dep.Lock.Revision
	}
	return r.fp + "/" + rev, nil
}

func (r *resolvingDeployer) Unlock(_ context.Context, host string, _ ...nixdeploy.Sink) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unlocked = append(r.unlocked, host)
	return nil
}

const testRev = "5f3c9a1e7b2d4c6e8a0b1d3f5e7c9a2b4d6f8e01"

func newResolvingHarness(t *testing.T, started chan nixdeploy.Deployment) (*harness, *resolvingDeployer) {
	rd := &resolvingDeployer{fakeDeployer: &fakeDeployer{started: started}, fp: "steps-v1",
		lock: &nixdeploy.Lock{Revision: testRev, URL: "git+file:///dots?rev=" + testRev, InstallerRevision: testRev,
			InstallerURL: "git+file:///dots/installer?rev=" + testRev, Devices: map[string]map[string]string{"ganon": {"main": "/dev/nvme0n1"}}}}
	h := newHarness(t, harnessOptions{deployer: func(d *db.DB) bot.Deployer {
		rd.fakeDeployer.store = d
		return rd
	}})
	rd.fakeDeployer.clock = h.clock
	return h, rd
}

// TestApprovalShowsWhatRuns: the approval message shows the commit and the
// disk devices the flake formats; the lock is stored with the deployment
// and is what the run gets.
func TestApprovalShowsWhatRuns(t *testing.T) {
	started := make(chan nixdeploy.Deployment, 2)
	h, _ := newResolvingHarness(t, started)
	h.command(alice, "install ganon")
	h.settle()
	m := h.approvalMessage()
	text := m.Rendered()
	for _, want := range []string{"Commit: `" + testRev + "`", "main=/dev/nvme0n1", "At boot: no disk encryption"} {
		if !strings.Contains(text, want) {
			t.Errorf("approval message lacks %q:\n%s", want, text)
		}
	}
	if d := h.deployment(1); d.Lock == nil || d.Lock.URL != "git+file:///dots?rev="+testRev {
		t.Fatalf("stored lock = %+v", d.Lock)
	}
	h.react(bob, "white_check_mark", m.Channel, m.TS)
	h.settle()
	select {
	case dep := <-started:
		if dep.Lock == nil || dep.Lock.Revision != testRev {
			t.Errorf("the run got lock %+v", dep.Lock)
		}
	default:
		t.Fatal("the approved install did not run")
	}
}

// TestApprovalVoidWhenStepsChange: the deployer's digest of the steps is
// part of the fingerprint; a change voids the approval.
func TestApprovalVoidWhenStepsChange(t *testing.T) {
	started := make(chan nixdeploy.Deployment, 2)
	h, rd := newResolvingHarness(t, started)
	h.command(alice, "install ganon")
	h.settle()
	m := h.approvalMessage()
	rd.mu.Lock()
	rd.fp = "steps-v2"
	rd.mu.Unlock()
	h.react(bob, "white_check_mark", m.Channel, m.TS)
	h.settle()
	if len(started) != 0 {
		t.Fatal("an install whose steps changed ran on the old approval")
	}
	if !contains(h.auditKinds(1), bob+" approval-refused-changed") {
		t.Errorf("audit = %v", h.auditKinds(1))
	}
}

// TestResolveFailureRefusesInstall: a disk device other than the config's
// refuses the install before any approval is asked for.
func TestResolveFailureRefusesInstall(t *testing.T) {
	h, rd := newResolvingHarness(t, nil)
	rd.err = bot.UserError("refusing to install ganon: the flake's disko config formats main=/dev/sda, but the config's disk is /dev/nvme0n1", errors.New("mismatch"))
	h.command(alice, "install ganon")
	h.settle()
	for _, m := range h.slack.Messages() {
		if strings.Contains(m.Versions[0], "Approval needed") {
			t.Fatal("an approval was asked for an install that cannot run")
		}
	}
	if d := h.deployment(1); d.State != nixdeploy.StateFailed {
		t.Errorf("#1 is %s, want failed", d.State)
	}
	var found bool
	for _, e := range h.ephemerals(alice) {
		found = found || (strings.Contains(e, "/dev/sda") && strings.Contains(e, "/dev/nvme0n1"))
	}
	if !found {
		t.Errorf("alice was not told both disks: %q", h.ephemerals(alice))
	}
}

// TestUnlockDisk: deployers may unlock a host's disk; it is audited.
func TestUnlockDisk(t *testing.T) {
	h, rd := newResolvingHarness(t, nil)
	h.command(alice, "unlock-disk ganon")
	h.settle()
	if len(rd.unlocked) != 1 || rd.unlocked[0] != "ganon" {
		t.Fatalf("unlocked = %q", rd.unlocked)
	}
	if !contains(h.auditKinds(0), alice+" unlock-disk") {
		t.Errorf("audit = %v", h.auditKinds(0))
	}
	h.command("U0NOBODY1", "unlock-disk ganon")
	h.settle()
	if len(rd.unlocked) != 1 {
		t.Error("a non-deployer unlocked a disk")
	}
}
