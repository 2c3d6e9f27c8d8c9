package nixdeploy_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/nixdeploy/nixdeploy"
)

// TestHostNamePattern: a host name becomes a flake attribute, a file name
// in the key store and a word in commands, so anything but lower-case
// letters, digits and dashes is refused, wherever it sits in the name
// (the pattern is anchored at both ends).
func TestHostNamePattern(t *testing.T) {
	for _, name := range []string{"ganon;id", "a/../b", "gan$on", "a.b", "a_b", "ganon ", "-ganon", "Ganon", "ganon\nid"} {
		t.Run(name, func(t *testing.T) {
			cfg := strings.Replace(validConfig, `name = "ganon"`, `name = "`+strings.ReplaceAll(name, "\n", `\n`)+`"`, 1)
			_, err := nixdeploy.ParseConfig("f.toml", []byte(cfg))
			var ce *nixdeploy.ConfigError
			if !errors.As(err, &ce) || !slices.ContainsFunc(ce.Problems, func(p string) bool { return strings.Contains(p, "name must match [a-z0-9-]") }) {
				t.Errorf("host name %q accepted (err %v)", name, err)
			}
			if nixdeploy.ValidName(name) {
				t.Errorf("ValidName(%q) = true", name)
			}
		})
	}
	for _, name := range []string{"ganon", "rk1-node1", "a", "0x"} {
		if !nixdeploy.ValidName(name) {
			t.Errorf("ValidName(%q) = false", name)
		}
	}
}
