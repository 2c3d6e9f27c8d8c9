package main

import (
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/nixdeploy/nixdeploy"
)

// TestCheckLocalRunner: a local runner needs nix, nixos-anywhere and
// nixos-rebuild on PATH, and the refusal names exactly what is missing in
// one line; an SSH runner needs none of them here.
func TestCheckLocalRunner(t *testing.T) {
	on := func(tools ...string) func(string) (string, error) {
		return func(name string) (string, error) {
			if slices.Contains(tools, name) {
				return "/nix/store/x/bin/" + name, nil
			}
			return "", exec.ErrNotFound
		}
	}
	local := &nixdeploy.Config{Runner: nixdeploy.Runner{Address: "local"}}
	for _, tc := range []struct {
		name string
		cfg  *nixdeploy.Config
		path func(string) (string, error)
		want string
	}{
		{"all there", local, on("nix", "nixos-anywhere", "nixos-rebuild"), ""},
		{"none", local, on(), "and nix, nixos-anywhere, nixos-rebuild are not"},
		{"debian's nix only", local, on("nix"), "and nixos-anywhere, nixos-rebuild are not"},
		{"no nixos-rebuild", local, on("nix", "nixos-anywhere"), "and nixos-rebuild is not"},
		{"empty address is local", &nixdeploy.Config{}, on(), "are not"},
		{"ssh runner", &nixdeploy.Config{Runner: nixdeploy.Runner{Address: "builder@runner.lan:22"}}, on(), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkLocalRunner(tc.cfg, tc.path)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != 1 || !strings.Contains(ee.msg, tc.want) || strings.Contains(ee.msg, "\n") {
				t.Fatalf("err = %v, want one line with %q", err, tc.want)
			}
		})
	}
}
