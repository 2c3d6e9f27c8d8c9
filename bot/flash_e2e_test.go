package bot_test

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/bmc"
	"github.com/nixdeploy/nixdeploy/bot"
	"github.com/nixdeploy/nixdeploy/db"
	"github.com/nixdeploy/nixdeploy/deployer"
	"github.com/nixdeploy/nixdeploy/internal/bmcfake"
	"github.com/nixdeploy/nixdeploy/internal/sshlab"
	"github.com/nixdeploy/nixdeploy/internal/testtool"
)

// TestEndToEndFlash drives /nixdeploy flash through the bot's approval
// with the real deployer: the image is hashed on the (sshd lab) runner at
// the request, another person approves, and curl on the runner uploads it
// to a fake BMC. If the image changes between the approval and the run,
// nothing reaches the BMC.
func TestEndToEndFlash(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		testtool.Missing(t, "flashing uploads with curl on the runner")
	}
	for _, tc := range []struct {
		name    string
		changed bool
	}{{"approved image", false}, {"image changed after approval", true}} {
		t.Run(tc.name, func(t *testing.T) {
			fake := bmcfake.New(bmcfake.Options{User: "root", Password: bmcPassword})
			t.Cleanup(fake.Close)
			lab := sshlab.New(t, sshlab.Options{Hosts: []string{"rk1-node1"}})
			cfg := lab.Config(`
[slack]
channel = "C0FLEET01"
deployers = ["U0ALICE01", "U0BOB0001"]
approvers = ["U0ALICE01", "U0BOB0001"]
destructive = true
`)
			cfg.BMCs = []nixdeploy.BMC{{Name: "turingpi", Address: fake.Address(), User: "root", CertSHA256: nixdeploy.FormatFingerprint(fake.Fingerprint())}}
			cfg.Hosts[0].BMC, cfg.Hosts[0].BMCNode = "turingpi", 1
			fleet, err := bmc.NewFleet(cfg, bmc.FleetOptions{Getenv: func(string) string { return bmcPassword }, Client: bmc.Options{PollInterval: 10 * time.Millisecond}})
			if err != nil {
				t.Fatal(err)
			}
			image := filepath.Join(t.TempDir(), "rk1-staging.img")
			data := make([]byte, 200<<10)
			rand.Read(data)
			if err := os.WriteFile(image, data, 0o644); err != nil {
				t.Fatal(err)
			}
			newDeployer := func(store *db.DB) bot.Deployer {
				d, err := deployer.New(deployer.Options{
					Config: cfg, Store: store, HostKeys: lab.HostKeys(), ClientKey: lab.Client, BMC: fleet,
					ConnectTimeout: 5 * time.Second, KeepaliveInterval: time.Second, RebootGrace: -1,
					WaitBackoff: 20 * time.Millisecond, KillGrace: 2 * time.Second,
					Timeouts: deployer.Timeouts{Command: 20 * time.Second, Install: time.Minute, Rebuild: time.Minute, WaitSSH: 20 * time.Second, Verify: 20 * time.Second},
				})
				if err != nil {
					t.Fatal(err)
				}
				return d
			}
			h := newHarness(t, harnessOptions{cfg: cfg, realClock: true, interval: 20 * time.Millisecond, deployer: newDeployer, bmc: fleet})
			h.slash(alice, "flash rk1-node1 "+image)
			h.settle()
			msg := h.approvalMessage()
			if !strings.Contains(msg.Rendered(), "SHA-256: `") || !strings.Contains(msg.Rendered(), image) {
				t.Fatalf("approval message:\n%s", msg.Rendered())
			}
			if tc.changed {
				other := bytes.Clone(data)
				other[0] ^= 1
				if err := os.WriteFile(image, other, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			h.react(bob, "white_check_mark", msg.Channel, msg.TS)
			h.settle()
			dep := h.deployment(1)
			if !tc.changed {
				if dep.State != nixdeploy.StateSucceeded {
					t.Fatalf("flash %s: %s", dep.State, dep.Error)
				}
				if img := fake.Flashed(1); img == nil || !bytes.Equal(img.Data, data) {
					t.Fatal("the BMC does not hold the approved image")
				}
				return
			}
			if dep.State != nixdeploy.StateFailed || !strings.Contains(dep.Error, "changed after the flash of rk1-node1 was approved") {
				t.Errorf("flash of a changed image: %s: %s", dep.State, dep.Error)
			}
			if fake.Flashed(1) != nil {
				t.Error("the changed image was flashed")
			}
			for _, r := range fake.Requests() {
				if r.Query.Get("type") == "flash" || strings.HasPrefix(r.Path, "/api/bmc/upload/") {
					t.Errorf("the BMC heard of the changed image: %s %s?%s", r.Method, r.Path, r.Query.Encode())
				}
			}
		})
	}
}
