package deployer_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/bmc"
	"github.com/nixdeploy/nixdeploy/deployer"
	"github.com/nixdeploy/nixdeploy/internal/bmcfake"
	"github.com/nixdeploy/nixdeploy/internal/testtool"
	"github.com/nixdeploy/nixdeploy/runs"
)

// flashLab is a lab whose node1 sits in slot 1 of a fake BMC, with an
// image file on the (loopback) runner.
type flashLab struct {
	e     *env
	fake  *bmcfake.BMC
	image string
	data  []byte
}

func newFlashLab(t *testing.T) *flashLab {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		testtool.Missing(t, "flashing uploads with curl on the runner (install curl)")
	}
	f := &flashLab{fake: bmcfake.New(bmcfake.Options{User: "root", Password: "bmc-password-1"})}
	t.Cleanup(f.fake.Close)
	f.e = newEnv(t, envConfig{
		cfg: func(c *nixdeploy.Config) {
			c.BMCs = []nixdeploy.BMC{{Name: "turingpi", Address: f.fake.Address(), User: "root", CertSHA256: nixdeploy.FormatFingerprint(f.fake.Fingerprint())}}
			c.Hosts[0].BMC, c.Hosts[0].BMCNode = "turingpi", 1
		},
		opts: func(o *deployer.Options) {
			fleet, err := bmc.NewFleet(o.Config, bmc.FleetOptions{Getenv: func(string) string { return "bmc-password-1" }, Client: bmc.Options{PollInterval: 10 * time.Millisecond}})
			if err != nil {
				t.Fatal(err)
			}
			o.BMC = fleet
		},
	})
	f.image = filepath.Join(t.TempDir(), "rk1-staging.img")
	f.data = make([]byte, 300<<10)
	rand.Read(f.data)
	if err := os.WriteFile(f.image, f.data, 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// request resolves and "approves" a flash as the bot does: Resolve on
// the runner, the plan fingerprint over it.
func (f *flashLab) request(t *testing.T) *nixdeploy.Deployment {
	t.Helper()
	dep := &nixdeploy.Deployment{Hosts: []string{"node1"}, Action: nixdeploy.ActionFlash, Requester: "alice", Source: nixdeploy.SourceSlack, Image: f.image}
	lock, err := f.e.d.Resolve(t.Context(), *dep)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(f.data)
	if lock.Image != f.image || lock.ImageSize != int64(len(f.data)) || lock.ImageSHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("lock %+v, want %s, %d bytes, %x", lock, f.image, len(f.data), sum)
	}
	dep.Lock = lock
	if dep.Fingerprint, err = f.e.d.Fingerprint(*dep); err != nil {
		t.Fatal(err)
	}
	return dep
}

func (f *flashLab) flashRequests() int {
	n := 0
	for _, r := range f.fake.Requests() {
		if r.Query.Get("type") == "flash" && r.Query.Get("opt") == "set" || strings.HasPrefix(r.Path, "/api/bmc/upload/") {
			n++
		}
	}
	return n
}

func TestFlashWritesTheApprovedImage(t *testing.T) {
	f := newFlashLab(t)
	dep := f.request(t)
	_, err := runs.New(f.e.db, f.e.d).Run(t.Context(), dep, f.e.sink)
	if err != nil {
		t.Fatalf("flash: %v\n%s", err, f.e.sink.text())
	}
	img := f.fake.Flashed(1)
	if img == nil || !bytes.Equal(img.Data, f.data) || img.Name != "rk1-staging.img" {
		t.Fatalf("the fake BMC holds %+v, not the image", img)
	}
	if !f.fake.Power(1) {
		t.Error("node1 was left off after flashing")
	}
	log := f.e.sink.text()
	for _, want := range []string{"the staged image is the approved one", "--pinnedpubkey 'sha256//", "the BMC wrote rk1-staging.img to the eMMC of node1 and checked it", "switched node1 on"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	// The token went to curl on stdin: it is in no log line.
	for _, r := range f.fake.Requests() {
		if r.Auth != "Bearer" && r.Path != "/api/bmc/authenticate" {
			t.Errorf("request %s %s without a bearer token", r.Method, r.Path)
		}
	}
	if strings.Contains(log, "Bearer ") {
		t.Error("the log shows the bearer token's header")
	}
	if got := stepNames(f.e.steps(dep.ID)); got != "connect mktemp stage-image check-image flash remove-tmp" {
		t.Errorf("steps %q", got)
	}
}

// The approval is bound to the image's hash: an image changed between the
// approval and the run is refused before the BMC hears of it, and nothing
// is flashed.
func TestFlashRefusesAnImageChangedAfterApproval(t *testing.T) {
	f := newFlashLab(t)
	dep := f.request(t)
	other := bytes.Clone(f.data)
	other[len(other)/2] ^= 0xff // same size, one byte different
	if err := os.WriteFile(f.image, other, 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := runs.New(f.e.db, f.e.d).Run(t.Context(), dep, f.e.sink)
	var ic *deployer.ImageChangedError
	if !errors.Is(err, nixdeploy.ErrPlanChanged) || !errors.As(err, &ic) {
		t.Fatalf("error %v, want the image refused as changed\n%s", err, f.e.sink.text())
	}
	if rep.Hosts[0].Step != "check-image" {
		t.Errorf("failed at %q, want check-image", rep.Hosts[0].Step)
	}
	if f.fake.Flashed(1) != nil || f.flashRequests() != 0 {
		t.Errorf("the BMC was asked to flash (%d requests) or holds an image", f.flashRequests())
	}
	if !strings.Contains(ic.UserMessage(), "changed after the flash of node1 was approved") {
		t.Errorf("message %q", ic.UserMessage())
	}
}

// A request for another image, or for the same path with other bytes,
// has another fingerprint, so an approval of one never covers the other.
func TestFlashFingerprintNamesTheImage(t *testing.T) {
	f := newFlashLab(t)
	dep := f.request(t)
	other := *dep
	l := *dep.Lock
	l.ImageSHA256 = strings.Repeat("0", 64)
	other.Lock = &l
	fp, err := f.e.d.Fingerprint(other)
	if err != nil {
		t.Fatal(err)
	}
	if fp == dep.Fingerprint {
		t.Error("a different image hash has the same fingerprint")
	}
	// And the run refuses the plan it was not approved for at the write.
	other.Fingerprint = fp
	other.Lock = dep.Lock
	_, err = runs.New(f.e.db, f.e.d).Run(t.Context(), &other, f.e.sink)
	if !errors.Is(err, nixdeploy.ErrPlanChanged) || f.fake.Flashed(1) != nil || f.flashRequests() != 0 {
		t.Errorf("run with a fingerprint of another image: %v; flashed %v", err, f.fake.Flashed(1) != nil)
	}
}

// curl enforces --pinnedpubkey together with --insecure: an upload to a
// BMC with another key fails (exit 90) before any request reaches it.
func TestCurlPinnedPubKeyWithInsecure(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		testtool.Missing(t, "curl")
	}
	fake := bmcfake.New(bmcfake.Options{User: "root", Password: "pw"})
	defer fake.Close()
	wrong := sha256.Sum256([]byte("another key"))
	cmd := exec.CommandContext(t.Context(), "curl", "--fail", "--silent", "--show-error", "--noproxy", "*", "--insecure",
		"--pinnedpubkey", "sha256//"+b64(wrong[:]), "https://"+fake.Address()+"/api/bmc?opt=get&type=power")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 90 {
		t.Fatalf("curl with a wrong pin: %v, %s; want exit 90", err, out)
	}
	if n := len(fake.Requests()); n != 0 {
		t.Errorf("the BMC got %d requests through a wrong pin", n)
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
