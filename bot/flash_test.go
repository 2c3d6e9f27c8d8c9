package bot_test

import (
	"context"
	"strings"
	"testing"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/bot"
	"github.com/nixdeploy/nixdeploy/db"
	"github.com/nixdeploy/nixdeploy/internal/bmcfake"
)

const testImageSHA = "69962e3c2e7e9db726365b8c7242973097910d3ac65af93b19c3c21fa8fffc9b"

// TestFlashNeedsApprovalBoundToImage: /nixdeploy flash goes through the
// install's approval path. The message names the slot and the image's
// path, size and SHA-256 that the deployer resolved on the runner; the
// lock with them is stored, and the approved run gets it with the
// fingerprint the deployer checks again before writing.
func TestFlashNeedsApprovalBoundToImage(t *testing.T) {
	started := make(chan nixdeploy.Deployment, 1)
	rd := &resolvingDeployer{fakeDeployer: &fakeDeployer{started: started}, fp: "flash-steps",
		lock: &nixdeploy.Lock{Image: "/srv/images/rk1-staging.img", ImageSize: 1 << 30, ImageSHA256: testImageSHA}}
	rec := &imageRecorder{resolvingDeployer: rd}
	h, fake := bmcHarness(t, bmcfake.Options{}, harnessOptions{deployer: func(d *db.DB) bot.Deployer {
		rd.fakeDeployer.store = d
		return rec
	}})
	rd.fakeDeployer.clock = h.clock
	h.command(alice, "flash rk1-node1 /srv/images/rk1-staging.img")
	h.settle()
	m := h.approvalMessage()
	text := m.Rendered()
	for _, want := range []string{"Approval needed: #1 flash rk1-node1", "eMMC is overwritten", "slot 1 of the BMC turingpi",
		"`/srv/images/rk1-staging.img`", "1,073,741,824 bytes", "SHA-256: `" + testImageSHA + "`"} {
		if !strings.Contains(text, want) {
			t.Errorf("approval message lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "Installer:") {
		t.Errorf("a flash's approval talks about an install:\n%s", text)
	}
	if rec.image != "/srv/images/rk1-staging.img" {
		t.Errorf("the deployer was asked to resolve image %q", rec.image)
	}
	if d := h.deployment(1); d.State != nixdeploy.StateAwaiting || d.Lock == nil || d.Lock.ImageSHA256 != testImageSHA {
		t.Fatalf("stored #1: %s, lock %+v", d.State, d.Lock)
	}
	// The requester's own approval does not count.
	h.react(alice, "white_check_mark", m.Channel, m.TS)
	h.settle()
	if len(started) != 0 {
		t.Fatal("a self-approved flash ran")
	}
	h.react(bob, "white_check_mark", m.Channel, m.TS)
	h.settle()
	select {
	case dep := <-started:
		if dep.Action != nixdeploy.ActionFlash || dep.Lock == nil || dep.Lock.Image != "/srv/images/rk1-staging.img" || dep.Lock.ImageSHA256 != testImageSHA || dep.Fingerprint != "flash-steps/" {
			t.Errorf("the run got %+v with lock %+v", dep, dep.Lock)
		}
	default:
		t.Fatal("the approved flash did not run")
	}
	if n := len(fake.Requests()); n != 0 {
		t.Errorf("the bot itself sent %d requests to the BMC; the deployer flashes", n)
	}
}

// imageRecorder notes the image the bot asks the deployer to resolve.
type imageRecorder struct {
	*resolvingDeployer
	image string
}

func (r *imageRecorder) Resolve(ctx context.Context, dep nixdeploy.Deployment) (*nixdeploy.Lock, error) {
	r.image = dep.Image
	return r.resolvingDeployer.Resolve(ctx, dep)
}
