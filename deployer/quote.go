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
