package nix_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/internal/nixfleet"
	"github.com/nixdeploy/nixdeploy/internal/testtool"
)

const (
	fleetConfig = "../examples/fleet/nixdeploy.toml"
	// luksRemoteKey is where disko reads ganon's passphrase and where
	// bootstrap-nixos.sh -e uploads it; the two must agree.
	luksRemoteKey = "/tmp/secret.key"
)

// requireTool is the shared internal/testtool helper.
var requireTool = testtool.Require

// nixDir is this directory as an absolute path: the flakes and the script
// resolve every path from it.
func nixDir(t *testing.T) string {
	t.Helper()
	d, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// cleanEnv is the test process's environment without variables that would
// change how nix or the script behave on a developer's machine.
func cleanEnv(drop ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "NIX_") || slices.Contains(drop, name) {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// runNix runs nix-instantiate in nix/. The dummy store and the private state,
// cache and home directories keep it away from /nix and any daemon, so it
// needs no write access there and behaves the same as root, as a user and
// in CI. Nothing here may fetch: there is no network and no nixpkgs.
func runNix(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	bin := requireTool(t, "nix-instantiate")
	tmp := t.TempDir()
	cmd := exec.CommandContext(t.Context(), bin, append([]string{"--store", "dummy://"}, args...)...)
	cmd.Dir = nixDir(t)
	cmd.Env = append(cleanEnv(),
		"NIX_STATE_DIR="+filepath.Join(tmp, "state"),
		"HOME="+tmp,
		"XDG_CACHE_HOME="+filepath.Join(tmp, "cache"),
	)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("nix-instantiate %s: %w\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out, nil
}

// evalJSON evaluates expr strictly and decodes the JSON result into v.
func evalJSON(t *testing.T, expr string, v any) {
	t.Helper()
	out, err := runNix(t, "--eval", "--strict", "--json", "--expr", expr)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("decode %s: %v", out, err)
	}
}

func nixFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".nix") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestTreeLayout pins the plan's directory structure, which the README and
// the bot's config (flake, installer_flake) refer to.
func TestTreeLayout(t *testing.T) {
	for _, p := range []string{
		"flake.nix",
		"nixos-installer/flake.nix",
		"nixos-installer/minimal-configuration.nix",
		"modules/nixos/common.nix",
		"modules/nixos/sops.nix",
		"modules/nixos/host-spec.nix",
		"modules/nixos/initrd-ssh.nix",
		"hosts/fleet.nix",
		"hosts/common/authorized-keys.nix",
		"hosts/common/disks/standard-btrfs.nix",
		"hosts/common/disks/rk1-emmc.nix",
		"hosts/common/rk1-base.nix",
		"hosts/common/rk1-hardware.nix",
		"hosts/nixos/ganon/configuration.nix",
		"hosts/nixos/ganon/hardware-configuration.nix",
		"hosts/nixos/rk1-node1/configuration.nix",
		"hosts/nixos/rk1-node2/configuration.nix",
		"hosts/nixos/rk1-node3/configuration.nix",
		"hosts/nixos/rk1-node4/configuration.nix",
		"scripts/bootstrap-nixos.sh",
		"scripts/helpers.sh",
		"README.md",
	} {
		fi, err := os.Stat(p)
		switch {
		case err != nil:
			t.Errorf("missing %s: %v", p, err)
		case fi.Size() == 0:
			t.Errorf("%s is empty", p)
		}
	}
	fi, err := os.Stat("scripts/bootstrap-nixos.sh")
	if err == nil && fi.Mode().Perm()&0o111 == 0 {
		t.Errorf("scripts/bootstrap-nixos.sh is not executable (mode %v)", fi.Mode())
	}
}

func TestNixFilesParse(t *testing.T) {
	requireTool(t, "nix-instantiate")
	files := nixFiles(t)
	if len(files) < 15 {
		t.Fatalf("found only %d .nix files: %v", len(files), files)
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			if _, err := runNix(t, "--parse", f); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestRK1NodeConfigs(t *testing.T) {
	base := filepath.Join(nixDir(t), "hosts/common/rk1-base.nix")
	var first []byte
	for n := 1; n <= 4; n++ {
		name := fmt.Sprintf("rk1-node%d", n)
		t.Run(name, func(t *testing.T) {
			file := "./hosts/nixos/" + name + "/configuration.nix"
			// The node files are modules; call one with stub arguments in
			// case it ever becomes a function, and read back what it sets.
			expr := `let m = import ` + file + `;` +
				` r = if builtins.isFunction m then m { config = {}; lib = {}; pkgs = {}; } else m;` +
				` in { host = r.networking.hostName; imports = map toString r.imports; }`
			var got struct {
				Host    string   `json:"host"`
				Imports []string `json:"imports"`
			}
			evalJSON(t, expr, &got)
			if got.Host != name {
				t.Errorf("networking.hostName = %q, want %q", got.Host, name)
			}
			if want := []string{base}; !slices.Equal(got.Imports, want) {
				t.Errorf("imports = %q, want %q", got.Imports, want)
			}

			// The plan: identical nodes, only the hostname differs.
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if c := bytes.Count(b, []byte(name)); c != 1 {
				t.Errorf("%s names %s %d times, want once (the hostname)", file, name, c)
			}
			norm := bytes.ReplaceAll(b, []byte(name), []byte("rk1-nodeN"))
			if first == nil {
				first = norm
			} else if !bytes.Equal(norm, first) {
				t.Errorf("%s differs from rk1-node1 beyond the hostname:\n%s\nvs rk1-node1:\n%s", file, norm, first)
			}
		})
	}
}

func loadFleet(t *testing.T) *nixdeploy.Config {
	t.Helper()
	cfg, err := nixdeploy.LoadConfig(fleetConfig)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func hostNames(cfg *nixdeploy.Config, attr func(nixdeploy.Host) string) []string {
	var names []string
	for _, h := range cfg.Hosts {
		names = append(names, attr(h))
	}
	slices.Sort(names)
	return names
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// evalFleet is hosts/fleet.nix, decoded as `nixdeploy check` decodes it.
func evalFleet(t *testing.T) nixfleet.Fleet {
	t.Helper()
	out, err := runNix(t, "--eval", "--strict", "--json", "hosts/fleet.nix")
	if err != nil {
		t.Fatal(err)
	}
	fleet, err := nixfleet.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	return fleet
}

// TestFleetMatchesConfig keeps the bot's view of the fleet
// (examples/fleet/nixdeploy.toml) and the Nix side's (hosts/fleet.nix) in
// step, with the comparison `nixdeploy check` makes: host set, system,
// address, disk, SSH port, disk key path and initrd SSH. A disk mismatch here
// would let the approval show one device while disko wipes another; a port
// mismatch would leave the bot waiting on a port sshd does not serve.
func TestFleetMatchesConfig(t *testing.T) {
	cfg := loadFleet(t)
	fleet := evalFleet(t)
	for _, p := range nixfleet.Compare(cfg, fleet) {
		t.Error(p)
	}
	for _, h := range cfg.Hosts {
		f, ok := fleet[h.Name]
		if !ok {
			continue
		}
		for _, p := range []string{
			"hosts/common/disks/" + f.DiskLayout + ".nix",
			"hosts/" + f.Hardware,
			"hosts/nixos/" + h.Name + "/configuration.nix",
		} {
			if _, err := os.Stat(p); err != nil {
				t.Errorf("%s: fleet.nix entry needs %s: %v", h.Name, p, err)
			}
		}
		if i := f.InitrdSSH; i != nil && len(i.KernelModules) == 0 {
			t.Errorf("%s: initrdSsh.kernelModules is empty: the initrd would have no network", h.Name)
		}
	}
	// The example fleet exercises every field: a LUKS host with an initrd
	// SSH server and hosts without either.
	if g := fleet["ganon"]; g.DiskKeyFile == nil || g.InitrdSSH == nil {
		t.Errorf("ganon: diskKeyFile %v, initrdSsh %v; want both set", g.DiskKeyFile, g.InitrdSSH)
	}
}

func TestScriptsShellcheck(t *testing.T) {
	testtool.Shellcheck(t, nixDir(t), "scripts/bootstrap-nixos.sh", "scripts/helpers.sh")
}
