package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixdeploy/nixdeploy/internal/testtool"
)

// TestCheckComparesNixTree runs `check` on a copy of the example fleet whose
// flake points at a temp copy of the repository's nix/hosts/fleet.nix (the
// example's own flake, /home/michael/dots/nix, does not exist here).
func TestCheckComparesNixTree(t *testing.T) {
	testtool.Require(t, "nix-instantiate")
	t.Setenv("NIX_STATE_DIR", filepath.Join(t.TempDir(), "nix-state"))
	t.Setenv("HOME", t.TempDir())

	tree := filepath.Join(t.TempDir(), "dots", "nix")
	if err := os.MkdirAll(filepath.Join(tree, "hosts"), 0o755); err != nil {
		t.Fatal(err)
	}
	fleetNix, err := os.ReadFile("../../nix/hosts/fleet.nix")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "hosts/fleet.nix"), fleetNix, 0o644); err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../../examples/fleet/nixdeploy.toml")
	if err != nil {
		t.Fatal(err)
	}
	const exampleFlake = `flake = "/home/michael/dots/nix"`
	if !strings.Contains(string(example), exampleFlake) {
		t.Fatalf("the example config no longer says %s", exampleFlake)
	}
	writeConfig := func(edit func(string) string) string {
		t.Helper()
		s := strings.Replace(string(example), exampleFlake, `flake = "`+tree+`"`, 1)
		// check refuses the example's placeholder recipient; a throwaway
		// real one stands in for the operator's.
		s = strings.ReplaceAll(s, `"age1-REPLACE-ME"`, `"age17044m9wgakla6pzftf4srtl3h5mcsr85jysgt5fg23zpnta8sfdqhzn452"`)
		s = edit(s)
		path := filepath.Join(t.TempDir(), "nixdeploy.toml")
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}

	t.Run("agree", func(t *testing.T) {
		cfg := writeConfig(func(s string) string { return s })
		out, errOut, code := runCLI(t, "", "check", "--config", cfg)
		if code != 0 || !strings.Contains(out, "compared with "+filepath.Join(tree, "hosts/fleet.nix")) || !strings.Contains(out, "ok: 5 hosts") {
			t.Errorf("check: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
		}
	})
	t.Run("mismatch", func(t *testing.T) {
		cfg := writeConfig(func(s string) string {
			s = strings.Replace(s, "port = 2222", "port = 2223", 1)
			return strings.Replace(s, `disk_key = "/tmp/secret.key"`, `disk_key = "/tmp/other.key"`, 1)
		})
		out, errOut, code := runCLI(t, "", "check", "--config", cfg)
		if code != 1 {
			t.Errorf("check: exit %d, want 1\nstdout: %s\nstderr: %s", code, out, errOut)
		}
		for _, want := range []string{
			`host "ganon": disk_key vs diskKeyFile: nixdeploy.toml "/tmp/other.key", hosts/fleet.nix "/tmp/secret.key"`,
			`host "ganon": initrd_ssh.port: nixdeploy.toml 2223, hosts/fleet.nix 2222`,
			"2 mismatches with the nix tree",
		} {
			if !strings.Contains(errOut, want) {
				t.Errorf("stderr lacks %q:\n%s", want, errOut)
			}
		}
	})
}
