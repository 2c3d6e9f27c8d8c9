package commands

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// lookalike names a non-ASCII character that is easy to mistake for an ASCII
// one. Phones, macOS autocorrect and copy-paste from web pages produce these;
// a host name containing one must fail loudly rather than "almost" match.
type lookalike struct {
	name  string
	ascii string
}

var lookalikes = map[rune]lookalike{
	0x00A0: {"no-break space", " "},
	0x00AD: {"soft hyphen", "-"},
	0x2010: {"hyphen", "-"},
	0x2011: {"non-breaking hyphen", "-"},
	0x2012: {"figure dash", "-"},
	0x2013: {"en dash", "-"},
	0x2014: {"em dash", "-"},
	0x2015: {"horizontal bar", "-"},
	0x2212: {"minus sign", "-"},
	0xFE63: {"small hyphen-minus", "-"},
	0x2018: {"left single quote", "'"},
	0x2019: {"right single quote", "'"},
	0x201C: {"left double quote", `"`},
	0x201D: {"right double quote", `"`},
	0x2026: {"ellipsis", "..."},
	0x200B: {"zero-width space", ""},
	0x200C: {"zero-width non-joiner", ""},
	0x200D: {"zero-width joiner", ""},
	0x2060: {"word joiner", ""},
	0xFEFF: {"zero-width no-break space", ""},
	0x2002: {"en space", " "},
	0x2003: {"em space", " "},
	0x2009: {"thin space", " "},
	0x202F: {"narrow no-break space", " "},
	0x3000: {"ideographic space", " "},
}

// forbidden explains each ASCII character refused outright. Nothing from
// Slack is ever meant to reach a shell unquoted; refusing these as well means
// a mistake elsewhere cannot turn a chat message into a command line.
var forbidden = map[byte]string{
	';':  "it separates shell commands",
	'&':  "it chains or backgrounds shell commands",
	'|':  "it pipes shell commands",
	'$':  "it expands shell variables and commands",
	'`':  "it runs shell commands",
	'\'': "it is shell quoting, and nixdeploy needs no quoting",
	'"':  "it is shell quoting, and nixdeploy needs no quoting",
	'\\': "it is a shell escape",
	'<':  "it redirects shell input",
	'>':  "it redirects shell output",
}

// slackEscapes are what Slack turns &, < and > into before sending the text.
var slackEscapes = []string{"&amp;", "&lt;", "&gt;"}

// checkSafe refuses text that contains anything but printable ASCII, spaces
// and tabs, or any shell metacharacter. It runs before any other parsing so
// that no later step ever sees such text.
func checkSafe(text string) error {
	for _, esc := range slackEscapes {
		if strings.Contains(text, esc) {
			return unsafef("%q is not allowed (it is how Slack sends &, < or >, which nixdeploy refuses); remove it and send the command again", esc)
		}
	}
	// Slack wraps links, channels and mentions in <…>; name the whole thing
	// so the user sees what Slack did to their text.
	if i := strings.IndexByte(text, '<'); i >= 0 {
		if j := strings.IndexByte(text[i:], '>'); j > 0 && !strings.ContainsAny(text[i:i+j], "\r\n") {
			return unsafef("a Slack link or mention %s is not allowed (type host names as plain text); remove it and send the command again", quote(clip(text[i:i+j+1], 60)))
		}
	}
	for i := 0; i < len(text); {
		b := text[i]
		switch {
		case b >= utf8.RuneSelf:
			r, size := utf8.DecodeRuneInString(text[i:])
			return nonASCII(text, i, r, size)
		case b == '\n' || b == '\r':
			return unsafef("a line break is not allowed (send one command per message, on one line); remove it and send the command again")
		case b == '\t':
		case b < 0x20 || b == 0x7f:
			return unsafef("control character U+%04X in %s is not allowed (commands are plain text); retype the command", b, quote(wordAt(text, i)))
		case forbidden[b] != "":
			what := string(b)
			if b == '$' && i+1 < len(text) && text[i+1] == '(' {
				what = "$("
			}
			return unsafef("%q is not allowed (%s); remove it and send the command again", what, forbidden[b])
		}
		i++
	}
	return nil
}

func nonASCII(text string, i int, r rune, size int) error {
	word := quote(wordAt(text, i))
	if r == utf8.RuneError && size == 1 {
		return unsafef("byte 0x%02X in %s is not valid UTF-8; retype the command in plain ASCII", text[i], word)
	}
	if l, ok := lookalikes[r]; ok {
		looks := "looks like nothing at all"
		if l.ascii != "" {
			looks = fmt.Sprintf("looks like %q but is not", l.ascii)
		}
		return unsafef("non-ASCII character U+%04X (%s) in %s is not allowed (it %s); retype it in plain ASCII", r, l.name, word, looks)
	}
	// Fullwidth forms mirror ASCII 0x21-0x7E at a fixed offset.
	if r >= 0xFF01 && r <= 0xFF5E {
		return unsafef("non-ASCII character U+%04X (fullwidth %q) in %s is not allowed (it looks like ASCII but is not); retype it in plain ASCII", r, rune(r-0xFEE0), word)
	}
	return unsafef("non-ASCII character U+%04X in %s is not allowed (commands are plain ASCII); retype it in plain ASCII", r, word)
}

// wordAt returns the space-delimited word around byte i, shortened so an
// error message stays one line.
func wordAt(text string, i int) string {
	start := strings.LastIndexAny(text[:i], " \t\r\n") + 1
	end := len(text)
	if j := strings.IndexAny(text[i:], " \t\r\n"); j >= 0 {
		end = i + j
	}
	w := text[start:end]
	const maxWord = 40
	if len(w) > maxWord {
		// Keep the offending byte visible.
		lo := max(i-start-maxWord/2, 0)
		hi := min(lo+maxWord, len(w))
		w = w[lo:hi]
	}
	return w
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// quote quotes s with every non-ASCII or invisible character escaped, so the
// user can see a look-alike that the chat client renders as the real thing.
func quote(s string) string { return fmt.Sprintf("%+q", s) }
