package keys_test

import (
	"strings"
	"testing"

	"github.com/nixdeploy/nixdeploy/keys"
)

func TestConfigProblems(t *testing.T) {
	const valid = "age17044m9wgakla6pzftf4srtl3h5mcsr85jysgt5fg23zpnta8sfdqhzn452"
	tests := []struct {
		name  string
		edit  func(string) string
		wants []string
	}{
		{"valid", func(s string) string { return s }, nil},
		{"placeholder", func(s string) string { return strings.Replace(s, valid, "age1-REPLACE-ME", 1) },
			[]string{`secrets.admin_recipients: "age1-REPLACE-ME" is the example's placeholder`}},
		{"bad checksum", func(s string) string { return strings.Replace(s, valid, valid[:len(valid)-1]+"3", 1) },
			[]string{"is not a valid age recipient"}},
		{"an SSH key is not an admin recipient", func(s string) string {
			return strings.Replace(s, valid, "age1ssh-ed25519", 1)
		}, []string{"is not a valid age recipient"}},
		{"a file the hosts do not read", func(s string) string {
			return strings.Replace(s, `file = "secrets/secrets.yaml"`, `file = "secrets/fleet.yaml"`, 1)
		}, []string{"secrets.file: the hosts decrypt secrets.yaml at the root of the nix-secrets flake input"}},
		{".sops.yaml elsewhere", func(s string) string {
			return strings.Replace(s, `sops_config = "secrets/.sops.yaml"`, `sops_config = ".sops.yaml"`, 1)
		}, []string{"secrets.sops_config: keep .sops.yaml beside secrets.file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := loadTOML(t, tt.edit(fleetTOML))
			got := keys.ConfigProblems(cfg)
			if len(got) != len(tt.wants) {
				t.Fatalf("problems %q, want %d", got, len(tt.wants))
			}
			for i, w := range tt.wants {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %q, want %q", got[i], w)
				}
			}
		})
	}
}
