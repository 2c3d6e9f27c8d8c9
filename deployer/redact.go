package deployer

import (
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// Redacted replaces secret text in every line a sink or the store sees.
const Redacted = "[REDACTED]"

// minSecretLen is the shortest configured secret that is redacted; shorter
// values would shred ordinary output (a secret "1" would hit every digit).
const minSecretLen = 4

var (
	pemBegin  = regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----`)
	pemEnd    = regexp.MustCompile(`-----END [A-Z0-9 ]*PRIVATE KEY-----`)
	ageSecret = regexp.MustCompile(`AGE-SECRET-KEY-1[0-9A-Z]+|age-secret-key-1[0-9a-z]+`)
)

// redactor removes secrets from output lines. Private-key PEM blocks span
// lines, so it keeps per-stream state: everything between a BEGIN … PRIVATE
// KEY line and its END line is replaced. A block that never ends keeps its
// stream redacted, which errs on the safe side.
type redactor struct {
	// inBlock is keyed by stream; only the emitter goroutine touches it.
	inBlock map[string]bool

	// mu serialises add; plain reads repl without it, on every line.
	mu      sync.Mutex
	secrets []string
	repl    atomic.Pointer[strings.Replacer]
}

func newRedactor(secrets []string) *redactor {
	r := &redactor{inBlock: map[string]bool{}}
	r.add(secrets...)
	return r
}

// add registers more secret values. Multi-line values are split, and every
// line long enough to be safe to redact is added on its own.
func (r *redactor) add(values ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range values {
		for _, line := range strings.Split(v, "\n") {
			line = strings.TrimSpace(line)
			if len(line) >= minSecretLen && !slices.Contains(r.secrets, line) {
				r.secrets = append(r.secrets, line)
			}
		}
	}
	// Longest first, so a secret that contains another is replaced whole.
	slices.SortFunc(r.secrets, func(a, b string) int { return len(b) - len(a) })
	pairs := make([]string, 0, 2*len(r.secrets))
	for _, s := range r.secrets {
		pairs = append(pairs, s, Redacted)
	}
	if len(pairs) > 0 {
		r.repl.Store(strings.NewReplacer(pairs...))
	}
}

// addPEM registers the body lines of a PEM private key, so the key is
// redacted even when printed without its BEGIN and END lines.
func (r *redactor) addPEM(pem []byte) {
	var body []string
	for _, line := range strings.Split(string(pem), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "-----") || len(line) < 16 {
			continue
		}
		body = append(body, line)
	}
	r.add(body...)
}

// stateless reports whether plain redacts s as line would, whatever its
// stream: no private-key block is open on any stream, and s starts none.
// It spares the emitter naming the stream of every line.
func (r *redactor) stateless(s string) bool {
	return len(r.inBlock) == 0 && !strings.Contains(s, "PRIVATE KEY-----")
}

// line redacts one line of stream key.
func (r *redactor) line(key, s string) string {
	if r.inBlock[key] {
		loc := pemEnd.FindStringIndex(s)
		if loc == nil {
			return Redacted
		}
		delete(r.inBlock, key)
		return Redacted + s[loc[0]:loc[1]] + r.line(key, s[loc[1]:])
	}
	if strings.Contains(s, "PRIVATE KEY-----") {
		if loc := pemBegin.FindStringIndex(s); loc != nil {
			head := r.plain(s[:loc[0]]) + s[loc[0]:loc[1]]
			rest := s[loc[1]:]
			if end := pemEnd.FindStringIndex(rest); end != nil {
				return head + Redacted + rest[end[0]:end[1]] + r.line(key, rest[end[1]:])
			}
			r.inBlock[key] = true
			if rest != "" {
				head += Redacted
			}
			return head
		}
	}
	return r.plain(s)
}

// splitWindow is the least tail of a split line held back for the next
// piece: an age identity is 74 characters, the PEM markers less.
const splitWindow = 80

// cut divides s, the first piece of an output line the reader split (at
// MaxLineBytes), into a head to emit now and a tail to put before the
// line's next piece. No secret that fits on one line spans the cut: the
// tail is at least the longest secret's length less one, and the cut moves
// back before any secret that would span it. Redacting head and tail+next
// apart then finds every secret the whole line holds (issue 15, attack 2).
func (r *redactor) cut(s string) (head, tail string) {
	r.mu.Lock()
	secrets := r.secrets
	r.mu.Unlock()
	w := splitWindow
	for _, sec := range secrets {
		w = max(w, len(sec))
	}
	cut := len(s) - (w - 1)
	for moved := true; moved && cut > 0; {
		moved = false
		for _, sec := range secrets {
			lo, hi := max(0, cut-len(sec)+1), min(len(s), cut+len(sec)-1)
			if i := strings.Index(s[lo:hi], sec); i >= 0 && lo+i < cut {
				cut, moved = lo+i, true
			}
		}
		lo := max(0, cut-2*splitWindow)
		for _, m := range ageSecret.FindAllStringIndex(s[lo:], -1) {
			if lo+m[0] < cut && lo+m[1] > cut {
				cut, moved = lo+m[0], true
			}
		}
	}
	if cut <= 0 {
		return "", s
	}
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut], s[cut:]
}

// plain redacts the secrets that fit on one line.
func (r *redactor) plain(s string) string {
	if strings.Contains(s, "AGE-SECRET-KEY-1") || strings.Contains(s, "age-secret-key-1") {
		s = ageSecret.ReplaceAllLiteralString(s, Redacted)
	}
	if repl := r.repl.Load(); repl != nil {
		s = repl.Replace(s)
	}
	return s
}
