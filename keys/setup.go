package keys

import (
	"fmt"
	"path/filepath"
	"strings"

	"filippo.io/age"

	"github.com/nixdeploy/nixdeploy"
)

// PlaceholderMarker marks a value in the example config that the operator
// must replace. Config loading accepts it, so the example fleet still loads
// for the demo and the tests; ConfigProblems refuses it.
const PlaceholderMarker = "REPLACE-ME"

// SecretsFileName is the file the hosts decrypt: nix/modules/nixos/sops.nix
// reads inputs.nix-secrets + "/secrets.yaml".
const SecretsFileName = "secrets.yaml"

// ConfigProblems returns the key workflow's objections to a config that
// loaded: one line per problem, each naming the config key and, where the
// file shows it, its line. `check` and
// `keys check` refuse a config with any; LoadConfig does not, so the
// example fleet with its placeholders still loads for the demo.
func ConfigProblems(cfg *nixdeploy.Config) []string {
	var out []string
	for _, r := range cfg.Secrets.AdminRecipients {
		switch {
		case strings.Contains(r, PlaceholderMarker):
			out = append(out, fmt.Sprintf("secrets.admin_recipients: %q is the example's placeholder; put your own age recipient there (age-keygen -y ~/.config/sops/age/keys.txt prints it)", r))
		case !validRecipient(r):
			out = append(out, fmt.Sprintf("secrets.admin_recipients: %q is not a valid age recipient (age1…, as age-keygen -y prints it)", r))
		}
	}
	s := cfg.Secrets
	if s.File != "" && filepath.Base(s.File) != SecretsFileName {
		out = append(out, fmt.Sprintf("secrets.file: the hosts decrypt %s at the root of the nix-secrets flake input (nix/modules/nixos/sops.nix), so name that file: <checkout of nix-secrets>/%s, not %s", SecretsFileName, SecretsFileName, filepath.Base(s.File)))
	}
	if s.File != "" && s.SopsConfig != "" && filepath.Dir(s.File) != filepath.Dir(s.SopsConfig) {
		out = append(out, "secrets.sops_config: keep .sops.yaml beside secrets.file, at the root of the nix-secrets repository, so the repository carries its own creation rules")
	}
	return cfg.Locate(out)
}

// validRecipient accepts the recipient forms sops reads for age
// (age/keysource.go, parseRecipient) that the key workflow can encrypt to:
// X25519 and post-quantum hybrid.
func validRecipient(r string) bool {
	if strings.HasPrefix(r, "age1pq1") {
		_, err := age.ParseHybridRecipient(r)
		return err == nil
	}
	_, err := age.ParseX25519Recipient(r)
	return err == nil
}
