// Package nixfleet reads the nix tree's host table (nix/hosts/fleet.nix) and
// compares it with the fleet config, so the bot never installs a host with a
// disk, port or LUKS setting the Nix side does not have. `nixdeploy check`
// and the nix/ tests share this one comparison.
package nixfleet

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nixdeploy/nixdeploy"
)

// FleetFile is the host table's path inside the flake's tree.
const FleetFile = "hosts/fleet.nix"

// Host is one entry of hosts/fleet.nix.
type Host struct {
	System     string `json:"system"`
	Disk       string `json:"disk"`
	DiskLayout string `json:"diskLayout"`
	Hardware   string `json:"hardware"`
	Address    string `json:"address"`
	SSHPort    int    `json:"sshPort"`
	// DiskKeyFile is null (nil) for a layout without LUKS.
	DiskKeyFile *string    `json:"diskKeyFile"`
	InitrdSSH   *InitrdSSH `json:"initrdSsh"`
}

// InitrdSSH is a host's initrdSsh entry.
type InitrdSSH struct {
	Port          int      `json:"port"`
	HostKeyPath   string   `json:"hostKeyPath"`
	KernelModules []string `json:"kernelModules"`
	// Network is "dhcp" or a static address; only Nix reads it.
	Network json.RawMessage `json:"network"`
}

// Fleet is hosts/fleet.nix, keyed by nixosConfigurations name.
type Fleet map[string]Host

// Parse decodes the JSON that `nix-instantiate --eval --strict --json`
// prints for hosts/fleet.nix.
func Parse(b []byte) (Fleet, error) {
	var f Fleet
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("decode %s: %w", FleetFile, err)
	}
	return f, nil
}

// Eval evaluates the fleet.nix file at path with nix-instantiate (the binary
// bin). The dummy store keeps it away from /nix and any daemon: fleet.nix is
// plain Nix and imports nothing.
func Eval(ctx context.Context, bin, path string) (Fleet, error) {
	cmd := exec.CommandContext(ctx, bin, "--store", "dummy://", "--eval", "--strict", "--json", path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if i := strings.LastIndex(msg, "error:"); i >= 0 {
			msg = msg[i:]
		}
		return nil, fmt.Errorf("evaluate %s: %w: %s", path, err, msg)
	}
	return Parse(out)
}

// LocalTree returns the local directory of a flake reference that names
// one on this machine (/abs/dir, path:/abs/dir, git+file:///abs/repo with
// an optional ?dir=sub), when that directory holds hosts/fleet.nix. Remote
// flakes (github:…, git+ssh:…) give ok == false.
func LocalTree(flake string) (dir string, ok bool) {
	ref, _, _ := strings.Cut(flake, "#")
	switch {
	case strings.HasPrefix(ref, "/"):
		dir = ref
	case strings.HasPrefix(ref, "path:"), strings.HasPrefix(ref, "git+file:"):
		scheme, rest, _ := strings.Cut(ref, ":")
		u, err := url.Parse("file:" + rest)
		if err != nil || u.Path == "" {
			return "", false
		}
		dir = u.Path
		if sub := u.Query().Get("dir"); sub != "" && scheme == "git+file" {
			dir = filepath.Join(dir, sub)
		}
	default:
		return "", false
	}
	if !filepath.IsAbs(dir) {
		return "", false
	}
	if _, err := os.Stat(filepath.Join(dir, FleetFile)); err != nil {
		return "", false
	}
	return filepath.Clean(dir), true
}

// Check compares the config with the fleet.nix of its flake when it can
// see it: the flake is a local directory holding hosts/fleet.nix and
// nix-instantiate is on PATH. problems has one line per mismatch; note says
// what was (or was not) compared. err is for an evaluation that failed.
func Check(ctx context.Context, cfg *nixdeploy.Config) (problems []string, note string, err error) {
	dir, ok := LocalTree(cfg.Flake)
	if !ok {
		return nil, fmt.Sprintf("%s not compared: flake %q is not a local directory with %s", FleetFile, cfg.Flake, FleetFile), nil
	}
	bin, lerr := exec.LookPath("nix-instantiate")
	if lerr != nil {
		return nil, fmt.Sprintf("%s not compared: nix-instantiate is not on PATH", FleetFile), nil
	}
	file := filepath.Join(dir, FleetFile)
	fleet, err := Eval(ctx, bin, file)
	if err != nil {
		return nil, "", err
	}
	return Compare(cfg, fleet), "compared with " + file, nil
}

// Compare returns one line per disagreement between the config's hosts and
// fleet.nix: the host set, system, address, disk, SSH port, the LUKS key
// path and the initrd SSH server. Hosts are matched by flake attribute.
func Compare(cfg *nixdeploy.Config, fleet Fleet) []string {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	seen := map[string]bool{}
	for _, h := range cfg.Hosts {
		seen[h.FlakeAttr] = true
		f, ok := fleet[h.FlakeAttr]
		if !ok {
			add("host %q: %s has no entry %q", h.Name, FleetFile, h.FlakeAttr)
			continue
		}
		pair := func(what string, toml, nix any) {
			if toml != nix {
				add("host %q: %s: nixdeploy.toml %v, %s %v", h.Name, what, quote(toml), FleetFile, quote(nix))
			}
		}
		pair("system", h.System, f.System)
		pair("address", h.Address, f.Address)
		pair("disk", h.Disk, f.Disk)
		pair("port vs sshPort", h.Port, f.SSHPort)
		diskKey := ""
		if f.DiskKeyFile != nil {
			diskKey = *f.DiskKeyFile
		}
		switch {
		case h.DiskKey == "" && diskKey != "":
			add("host %q: disk_key: nixdeploy.toml has none, but %s encrypts the disk (diskKeyFile %q)", h.Name, FleetFile, diskKey)
		case h.DiskKey != "" && diskKey == "":
			add("host %q: disk_key %q: %s has diskKeyFile = null (no LUKS)", h.Name, h.DiskKey, FleetFile)
		default:
			pair("disk_key vs diskKeyFile", h.DiskKey, diskKey)
		}
		switch i, n := h.InitrdSSH, f.InitrdSSH; {
		case i == nil && n == nil:
		case i == nil:
			add("host %q: initrd_ssh: nixdeploy.toml has none, but %s runs an initrd SSH server on port %d", h.Name, FleetFile, n.Port)
		case n == nil:
			add("host %q: initrd_ssh: %s has initrdSsh = null", h.Name, FleetFile)
		default:
			pair("initrd_ssh.port", i.Port, n.Port)
			pair("initrd_ssh.host_key_path vs initrdSsh.hostKeyPath", i.HostKeyPath, n.HostKeyPath)
		}
	}
	var extra []string
	for name := range fleet {
		if !seen[name] {
			extra = append(extra, name)
		}
	}
	slices.Sort(extra)
	for _, name := range extra {
		add("%s host %q is not in nixdeploy.toml", FleetFile, name)
	}
	return p
}

func quote(v any) string {
	if s, ok := v.(string); ok {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprint(v)
}
