package simfleet

import (
	"errors"
	"strings"
)

// errSyntax is a command line the simulator will not interpret: it runs
// no shell, so pipes, redirections, expansions and the like are refused
// rather than half-understood.
var errSyntax = errors.New("syntax not supported by the simulator")

// splitWords splits a command line into words the way a POSIX shell does
// for the plain subset nixdeploy sends: blanks separate words; single
// quotes keep everything literally; double quotes keep everything but \\,
// \", \$ and \` escapes; a backslash outside quotes escapes the next
// character. An unquoted operator or expansion character is an errSyntax.
func splitWords(line string) ([]string, error) {
	var (
		words  []string
		cur    strings.Builder
		inWord bool
	)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			end := strings.IndexByte(line[i+1:], '\'')
			if end < 0 {
				return nil, errors.New("unterminated quoted string")
			}
			cur.WriteString(line[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(line) && line[i] != '"'; i++ {
				d := line[i]
				if d == '$' || d == '`' {
					return nil, errSyntax
				}
				if d == '\\' && i+1 < len(line) && strings.IndexByte("\\\"$`", line[i+1]) >= 0 {
					i++
					d = line[i]
				}
				cur.WriteByte(d)
			}
			if i >= len(line) {
				return nil, errors.New("unterminated quoted string")
			}
			inWord = true
		case c == '\\':
			if i+1 >= len(line) {
				return nil, errSyntax
			}
			i++
			cur.WriteByte(line[i])
			inWord = true
		case strings.IndexByte("|&;<>()$`*?[#~", c) >= 0 && !(inWord && (c == '#' || c == '~')):
			return nil, errSyntax
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	if len(words) == 0 {
		return nil, errors.New("empty command")
	}
	return words, nil
}
