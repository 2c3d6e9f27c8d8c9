package bmc

import (
	"strings"
	"unicode"
)

// ConsoleLines turns a raw serial buffer into its last n printable lines:
// carriage returns and terminal escape sequences go, other control
// characters become spaces, and trailing blank lines are dropped.
func ConsoleLines(raw string, n int) []string {
	raw = stripEscapes(raw)
	raw = strings.ReplaceAll(raw, "\r\n", "\n")
	var out []string
	for l := range strings.SplitSeq(raw, "\n") {
		// A lone \r rewrites the line on a terminal; keep what was last.
		if i := strings.LastIndexByte(strings.TrimRight(l, "\r"), '\r'); i >= 0 {
			l = l[i+1:]
		}
		l = strings.Map(func(r rune) rune {
			if r == '\t' {
				return r
			}
			if unicode.IsControl(r) {
				return ' '
			}
			return r
		}, l)
		out = append(out, strings.TrimRight(l, " "))
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

// stripEscapes removes ANSI CSI sequences (ESC [ … final byte), which
// U-Boot and systemd print for colour.
func stripEscapes(s string) string {
	if !strings.Contains(s, "\x1b") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '[' {
			j := i + 2
			for j < len(s) && (s[j] < 0x40 || s[j] > 0x7e) {
				j++
			}
			i = j
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
