package keys_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/internal/testtool"
	"github.com/nixdeploy/nixdeploy/keys"
)

// requireTool and runTool are the shared internal/testtool helpers.
var (
	requireTool = testtool.Require
	runTool     = testtool.Run
)

// sshKeygen creates an unencrypted key pair of type typ with the real
// ssh-keygen and returns the private key's path.
func sshKeygen(t *testing.T, dir, name, typ string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	args := []string{"-q", "-t", typ, "-N", "", "-C", name, "-f", p}
	if typ == "rsa" {
		// The smallest size ssh-keygen accepts: finding big primes is slow
		// and the size does not matter to these tests.
		args = append(args, "-b", "1024")
	}
	runTool(t, nil, "ssh-keygen", args...)
	return p
}

const fleetTOML = `
flake = "/srv/dots"
installer_flake = "/srv/dots/nixos-installer"

[keys]
dir = "keys"

[secrets]
sops_config = "secrets/.sops.yaml"
file = "secrets/secrets.yaml"
admin_recipients = ["age17044m9wgakla6pzftf4srtl3h5mcsr85jysgt5fg23zpnta8sfdqhzn452"]

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
tags = ["rk1"]

[[hosts]]
name = "rk1-node2"
address = "192.0.2.12"
system = "aarch64-linux"
disk = "/dev/mmcblk0"
tags = ["rk1"]
`

// newFleet writes the three-host fleet config into a temporary directory
// (with extra TOML appended) and loads it.
func newFleet(t *testing.T, extra string) *nixdeploy.Config {
	t.Helper()
	return loadTOML(t, fleetTOML+extra)
}

// loadTOML writes a fleet config into a temporary directory and loads it.
func loadTOML(t *testing.T, toml string) *nixdeploy.Config {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "secrets"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "nixdeploy.toml")
	if err := os.WriteFile(path, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := nixdeploy.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// initFleet creates every host's keys with Init.
func initFleet(t *testing.T, cfg *nixdeploy.Config, store *keys.Store) {
	t.Helper()
	changes, err := store.Init(t.Context(), hostNames(cfg))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range changes {
		if c.Err != nil {
			t.Fatalf("init %s: %v", c.Path, c.Err)
		}
	}
}

func hostNames(cfg *nixdeploy.Config) []string {
	var out []string
	for _, h := range cfg.Hosts {
		out = append(out, h.Name)
	}
	return out
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, path string, data []byte, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}
