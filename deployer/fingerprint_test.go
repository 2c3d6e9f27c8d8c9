package deployer_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/deployer"
	"github.com/nixdeploy/nixdeploy/internal/sshlab"
)

const fingerprintFleet = `
flake = "/srv/dots/nix"
installer_flake = "/srv/dots/nix/nixos-installer"

[[hosts]]
name = "ganon"
address = "192.0.2.10"
system = "x86_64-linux"
disk = "/dev/nvme0n1"
`

// fingerprintOf is the plan fingerprint of dep under the fleet config
// text; planning reaches no host, so a deployer without a client key
// does.
func fingerprintOf(t *testing.T, text string, dep nixdeploy.Deployment) string {
	t.Helper()
	cfg, err := nixdeploy.ParseConfig(filepath.Join(t.TempDir(), "nixdeploy.toml"), []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	d, err := deployer.New(deployer.Options{Config: cfg, Store: &discardStore{}, HostKeys: sshlab.Keys{Dir: t.TempDir()},
		NoClientKey: errors.New("no key in this test")})
	if err != nil {
		t.Fatal(err)
	}
	fp, err := d.Fingerprint(dep)
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

// TestFingerprintCoversPlan changes each field an approval is bound to in
// turn: the approval fingerprint is the deployer's plan fingerprint, so
// any change voids an approval.
func TestFingerprintCoversPlan(t *testing.T) {
	dep := nixdeploy.Deployment{Hosts: []string{"ganon"}, Action: nixdeploy.ActionInstall}
	base := fingerprintOf(t, fingerprintFleet, dep)
	if again := fingerprintOf(t, fingerprintFleet, dep); again != base {
		t.Fatal("the fingerprint of one plan is not stable")
	}
	for name, edit := range map[string]func(string) string{
		"disk":    func(s string) string { return strings.Replace(s, "/dev/nvme0n1", "/dev/sda", 1) },
		"address": func(s string) string { return strings.Replace(s, "192.0.2.10", "192.0.2.99", 1) },
		"port": func(s string) string {
			return strings.Replace(s, `address = "192.0.2.10"`, "address = \"192.0.2.10\"\nport = 2222", 1)
		},
		"flake": func(s string) string {
			return strings.Replace(s, `flake = "/srv/dots/nix"`, `flake = "/srv/other/nix"`, 1)
		},
		"installer": func(s string) string { return strings.Replace(s, "nix/nixos-installer", "nix/other-installer", 1) },
		"attr": func(s string) string {
			return strings.Replace(s, `disk = "/dev/nvme0n1"`, "disk = \"/dev/nvme0n1\"\nflake_attr = \"ganon2\"", 1)
		},
	} {
		if fingerprintOf(t, edit(fingerprintFleet), dep) == base {
			t.Errorf("changing the %s leaves the fingerprint unchanged", name)
		}
	}
	other := dep
	other.Action = nixdeploy.ActionSwitch
	if fingerprintOf(t, fingerprintFleet, other) == base {
		t.Error("the action is not covered")
	}
	locked := dep
	locked.Lock = &nixdeploy.Lock{Revision: "5f3c9a1e7b2d4c6e8a0b1d3f5e7c9a2b4d6f8e01"}
	if fingerprintOf(t, fingerprintFleet, locked) == base {
		t.Error("the locked revision is not covered")
	}
}
