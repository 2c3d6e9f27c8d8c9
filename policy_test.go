package nixdeploy_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/nixdeploy/nixdeploy"
)

// TestMultiHostInstallPolicy: per_host is the default; two_approvers needs
// two approvers; anything else is refused.
func TestMultiHostInstallPolicy(t *testing.T) {
	cfg, err := nixdeploy.ParseConfig("ok.toml", []byte(validConfig))
	if err != nil || cfg.Slack.MultiHostInstall != nixdeploy.MultiInstallPerHost {
		t.Fatalf("default = %q, %v", cfg.Slack.MultiHostInstall, err)
	}
	for _, tc := range []struct{ value, want string }{
		{"two_approvers", "needs at least two approvers"},
		{"one_click", `multi_host_install "one_click" must be per_host or two_approvers`},
	} {
		text := strings.Replace(validConfig, "[slack]\n", "[slack]\nmulti_host_install = \""+tc.value+"\"\n", 1)
		_, err := nixdeploy.ParseConfig("f.toml", []byte(text))
		var ce *nixdeploy.ConfigError
		if !errors.As(err, &ce) || !slices.ContainsFunc(ce.Problems, func(p string) bool { return strings.Contains(p, tc.want) }) {
			t.Errorf("%s: err %v, want %q", tc.value, err, tc.want)
		}
	}
	text := strings.Replace(validConfig, `approvers = ["UB"]`, "approvers = [\"UB\", \"UC\"]\nmulti_host_install = \"two_approvers\"", 1)
	if _, err := nixdeploy.ParseConfig("f.toml", []byte(text)); err != nil {
		t.Errorf("two approvers refused: %v", err)
	}
}
