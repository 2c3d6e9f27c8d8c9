package deployer

import "strings"

// shellQuote quotes s as one word for a POSIX shell: the remote side of an
// SSH session hands the command string to the login shell, so every argv
// element passes through here exactly once. Words made only of characters
// no shell treats specially stay bare, which keeps logged commands readable.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, unsafeRune) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// unsafeRune reports runes that need quoting. '=' is excluded because zsh
// expands a word that starts with it, '~' and '#' because they are special at
// the start of a word.
func unsafeRune(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return false
	}
	return !strings.ContainsRune("@%+:,./_-", r)
}

// shellJoin quotes each element of argv and joins them with spaces.
func shellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

// The remote side of an SSH session hands the command string to the
// user's login shell, whatever it is: sh, bash, zsh, or fish, which is
// common on NixOS and quotes differently (in fish, \' inside '…' is an
// escaped quote, so POSIX quoting lets `\'(touch /tmp/x)\'` out as a
// command substitution: issue 15, attack 4). So the POSIX script goes as
// octal escapes for sh's own printf, inside one single-quoted word that
// holds only digits, backslashes before digits, and the fixed frame: every
// shell of the Bourne, csh and fish families passes that word on verbatim
// (none of them treats \ followed by a digit inside '…' specially), and
// printf is built into every sh, so the runner needs no base64.
const (
	remotePrefix = `exec sh -c 'eval "$(printf "`
	remoteSuffix = `")"'`
)

// remoteScript is the command string that makes the login shell run the
// POSIX sh script. exec keeps the login shell's pid, which is the process
// group the wrapper reports.
func remoteScript(script string) string {
	var b strings.Builder
	b.Grow(len(remotePrefix) + 4*len(script) + len(remoteSuffix))
	b.WriteString(remotePrefix)
	for i := 0; i < len(script); i++ {
		c := script[i]
		b.WriteByte('\\')
		b.WriteByte('0' + c>>6)
		b.WriteByte('0' + c>>3&7)
		b.WriteByte('0' + c&7)
	}
	b.WriteString(remoteSuffix)
	return b.String()
}

// DecodeRemote returns the POSIX sh script a command string made by the
// deployer carries, for a simulated remote side (internal/simfleet).
func DecodeRemote(cmd string) (string, bool) {
	body, ok := strings.CutPrefix(cmd, remotePrefix)
	if !ok {
		return "", false
	}
	if body, ok = strings.CutSuffix(body, remoteSuffix); !ok || len(body)%4 != 0 {
		return "", false
	}
	out := make([]byte, 0, len(body)/4)
	for i := 0; i < len(body); i += 4 {
		e := body[i : i+4]
		if e[0] != '\\' || e[1] < '0' || e[1] > '3' || e[2] < '0' || e[2] > '7' || e[3] < '0' || e[3] > '7' {
			return "", false
		}
		out = append(out, (e[1]-'0')<<6|(e[2]-'0')<<3|(e[3]-'0'))
	}
	return string(out), true
}
