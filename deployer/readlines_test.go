package deployer

import (
	"strings"
	"testing"
)

func TestReadLines(t *testing.T) {
	const max = 16
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"plain", "a\nb\n", []string{"a", "b"}},
		{"empty lines kept", "a\n\nb", []string{"a", "", "b"}},
		{"crlf", "a\r\nb\r\n", []string{"a", "b"}},
		{"long line split", strings.Repeat("x", 40) + "\nend\n", []string{strings.Repeat("x", 16), strings.Repeat("x", 16), strings.Repeat("x", 8), "end"}},
		{"exactly max", strings.Repeat("y", 16) + "\nnext\n", []string{strings.Repeat("y", 16), "next"}},
		{"no final newline", "tail", []string{"tail"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			readLines(strings.NewReader(tc.in), max, func(b []byte) { got = append(got, string(b)) })
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
