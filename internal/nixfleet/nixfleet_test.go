package nixfleet_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/internal/nixfleet"
	"github.com/nixdeploy/nixdeploy/internal/testtool"
)

func ptr(s string) *string { return &s }

// fleetFor is the fleet.nix that agrees with cfg.
func fleetFor(cfg *nixdeploy.Config) nixfleet.Fleet {
	f := nixfleet.Fleet{}
	for _, h := range cfg.Hosts {
		n := nixfleet.Host{System: h.System, Disk: h.Disk, Address: h.Address, SSHPort: h.Port}
		if h.DiskKey != "" {
			n.DiskKeyFile = ptr(h.DiskKey)
		}
		if i := h.InitrdSSH; i != nil {
			n.InitrdSSH = &nixfleet.InitrdSSH{Port: i.Port, HostKeyPath: i.HostKeyPath, KernelModules: []string{"r8169"}}
		}
		f[h.FlakeAttr] = n
	}
	return f
}

func testConfig() *nixdeploy.Config {
	return &nixdeploy.Config{Hosts: []nixdeploy.Host{
		{Name: "ganon", FlakeAttr: "ganon", System: "x86_64-linux", Address: "192.0.2.100", Port: 22,
			Disk: "/dev/nvme0n1", DiskKey: "/tmp/secret.key",
			InitrdSSH: &nixdeploy.InitrdSSH{Port: 2222, HostKeyPath: "/etc/secrets/initrd/ssh_host_ed25519_key"}},
		{Name: "node", FlakeAttr: "node", System: "aarch64-linux", Address: "192.0.2.11", Port: 22,
			Disk: "/dev/disk/by-path/platform-fe2e0000.mmc"},
	}}
}

func TestCompare(t *testing.T) {
	tests := []struct {
		name   string
		change func(cfg *nixdeploy.Config, f nixfleet.Fleet)
		want   []string // substrings, one per expected line
	}{
		{name: "agree"},
		{
			name: "disk",
			change: func(_ *nixdeploy.Config, f nixfleet.Fleet) {
				h := f["node"]
				h.Disk = "/dev/mmcblk0"
				f["node"] = h
			},
			want: []string{`host "node": disk: nixdeploy.toml "/dev/disk/by-path/platform-fe2e0000.mmc", hosts/fleet.nix "/dev/mmcblk0"`},
		},
		{
			name: "port",
			change: func(cfg *nixdeploy.Config, _ nixfleet.Fleet) {
				cfg.Hosts[1].Port = 2200
			},
			want: []string{`host "node": port vs sshPort: nixdeploy.toml 2200, hosts/fleet.nix 22`},
		},
		{
			name: "disk key missing in config",
			change: func(cfg *nixdeploy.Config, _ nixfleet.Fleet) {
				cfg.Hosts[0].DiskKey = ""
			},
			want: []string{`host "ganon": disk_key: nixdeploy.toml has none, but hosts/fleet.nix encrypts the disk`},
		},
		{
			name: "disk key missing in fleet.nix",
			change: func(_ *nixdeploy.Config, f nixfleet.Fleet) {
				h := f["ganon"]
				h.DiskKeyFile = nil
				f["ganon"] = h
			},
			want: []string{`host "ganon": disk_key "/tmp/secret.key": hosts/fleet.nix has diskKeyFile = null`},
		},
		{
			name: "disk key path",
			change: func(_ *nixdeploy.Config, f nixfleet.Fleet) {
				h := f["ganon"]
				h.DiskKeyFile = ptr("/tmp/other.key")
				f["ganon"] = h
			},
			want: []string{`host "ganon": disk_key vs diskKeyFile: nixdeploy.toml "/tmp/secret.key", hosts/fleet.nix "/tmp/other.key"`},
		},
		{
			name: "initrd port and key path",
			change: func(_ *nixdeploy.Config, f nixfleet.Fleet) {
				f["ganon"].InitrdSSH.Port = 2223
				f["ganon"].InitrdSSH.HostKeyPath = "/etc/initrd_key"
			},
			want: []string{
				`host "ganon": initrd_ssh.port: nixdeploy.toml 2222, hosts/fleet.nix 2223`,
				`host "ganon": initrd_ssh.host_key_path vs initrdSsh.hostKeyPath: nixdeploy.toml "/etc/secrets/initrd/ssh_host_ed25519_key", hosts/fleet.nix "/etc/initrd_key"`,
			},
		},
		{
			name: "initrd only in fleet.nix",
			change: func(cfg *nixdeploy.Config, _ nixfleet.Fleet) {
				cfg.Hosts[0].InitrdSSH = nil
			},
			want: []string{`host "ganon": initrd_ssh: nixdeploy.toml has none, but hosts/fleet.nix runs an initrd SSH server on port 2222`},
		},
		{
			name: "initrd only in config",
			change: func(_ *nixdeploy.Config, f nixfleet.Fleet) {
				h := f["ganon"]
				h.InitrdSSH = nil
				f["ganon"] = h
			},
			want: []string{`host "ganon": initrd_ssh: hosts/fleet.nix has initrdSsh = null`},
		},
		{
			name: "host sets differ",
			change: func(_ *nixdeploy.Config, f nixfleet.Fleet) {
				f["extra"] = f["node"]
				delete(f, "node")
			},
			want: []string{`host "node": hosts/fleet.nix has no entry "node"`, `hosts/fleet.nix host "extra" is not in nixdeploy.toml`},
		},
		{
			name: "system and address",
			change: func(_ *nixdeploy.Config, f nixfleet.Fleet) {
				h := f["node"]
				h.System, h.Address = "x86_64-linux", "192.0.2.99"
				f["node"] = h
			},
			want: []string{`host "node": system:`, `host "node": address:`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			f := fleetFor(cfg)
			if tt.change != nil {
				tt.change(cfg, f)
			}
			got := nixfleet.Compare(cfg, f)
			if len(got) != len(tt.want) {
				t.Fatalf("Compare = %q, want %d line(s) %q", got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("line %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

func TestParseRejectsUnknownFields(t *testing.T) {
	if _, err := nixfleet.Parse([]byte(`{"ganon":{"sshPrt":22}}`)); err == nil {
		t.Error("Parse accepted a misspelt field; a typo in fleet.nix must not read as a default")
	}
	f, err := nixfleet.Parse([]byte(`{"ganon":{"sshPort":2200,"diskKeyFile":null,"initrdSsh":null}}`))
	if err != nil || f["ganon"].SSHPort != 2200 || f["ganon"].DiskKeyFile != nil {
		t.Errorf("Parse = %+v, %v", f, err)
	}
}

func TestLocalTree(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "nix/hosts"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nix/hosts/fleet.nix"), []byte("{ }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(dir, "nix")
	tests := []struct {
		flake  string
		want   string
		wantOK bool
	}{
		{tree, tree, true},
		{tree + "#ganon", tree, true},
		{"path:" + tree, tree, true},
		{"git+file://" + dir + "?dir=nix", tree, true},
		{"git+file://" + dir + "?dir=nix&rev=0123456789abcdef0123456789abcdef01234567", tree, true},
		{dir, "", false}, // no hosts/fleet.nix there
		{"github:owner/dots?dir=nix", "", false},
		{"git+ssh://git@example.com/dots?dir=nix", "", false},
		{"nix", "", false},
		{"/home/michael/dots/nix-does-not-exist", "", false},
	}
	for _, tt := range tests {
		got, ok := nixfleet.LocalTree(tt.flake)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("LocalTree(%q) = %q, %v; want %q, %v", tt.flake, got, ok, tt.want, tt.wantOK)
		}
	}
}

// TestCheck runs the real nix-instantiate on a temp copy of a fleet.nix.
func TestCheck(t *testing.T) {
	testtool.Require(t, "nix-instantiate")
	t.Setenv("NIX_STATE_DIR", filepath.Join(t.TempDir(), "state"))
	t.Setenv("HOME", t.TempDir())
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "hosts"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "hosts/fleet.nix"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig()
	cfg.Flake = dir

	const agree = `{
  ganon = { system = "x86_64-linux"; address = "192.0.2.100"; sshPort = 22;
    disk = "/dev/nvme0n1"; diskLayout = "x"; hardware = "x"; diskKeyFile = "/tmp/secret.key";
    initrdSsh = { port = 2222; hostKeyPath = "/etc/secrets/initrd/ssh_host_ed25519_key"; kernelModules = [ "igc" ]; network = "dhcp"; }; };
  node = { system = "aarch64-linux"; address = "192.0.2.11"; sshPort = 22;
    disk = "/dev/disk/by-path/platform-fe2e0000.mmc"; diskLayout = "x"; hardware = "x"; diskKeyFile = null; initrdSsh = null; };
}`
	t.Run("agree", func(t *testing.T) {
		write(agree)
		problems, note, err := nixfleet.Check(t.Context(), cfg)
		if err != nil || len(problems) != 0 || !strings.Contains(note, "compared with "+dir) {
			t.Errorf("Check = %q, %q, %v", problems, note, err)
		}
	})
	t.Run("mismatch", func(t *testing.T) {
		write(strings.NewReplacer(`sshPort = 22;
    disk = "/dev/disk`, `sshPort = 2200;
    disk = "/dev/disk`).Replace(agree))
		problems, _, err := nixfleet.Check(t.Context(), cfg)
		if err != nil || !slices.Equal(problems, []string{`host "node": port vs sshPort: nixdeploy.toml 22, hosts/fleet.nix 2200`}) {
			t.Errorf("Check = %q, %v", problems, err)
		}
	})
	t.Run("broken nix", func(t *testing.T) {
		write("{ ganon = ; }")
		_, _, err := nixfleet.Check(t.Context(), cfg)
		if err == nil || !strings.Contains(err.Error(), "error:") {
			t.Errorf("Check error = %v, want nix's error", err)
		}
	})
	t.Run("not visible", func(t *testing.T) {
		remote := *cfg
		remote.Flake = "github:owner/dots?dir=nix"
		problems, note, err := nixfleet.Check(t.Context(), &remote)
		if err != nil || problems != nil || !strings.Contains(note, "not compared") {
			t.Errorf("Check = %q, %q, %v", problems, note, err)
		}
	})
}
