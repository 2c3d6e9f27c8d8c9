package commands

// TableEntry exposes the command table to the external tests. They iterate
// the same table the parser and Help use, so a command cannot ship without
// help, an example that parses, or a branch in the parser.
type TableEntry struct {
	Words    string // as typed: "switch", "keys check"
	Aliases  []string
	Kind     Kind
	Synopsis string
	Example  string
}

func Table() []TableEntry {
	out := make([]TableEntry, len(table))
	for i, s := range table {
		out[i] = TableEntry{Words: s.words(), Aliases: s.aliases, Kind: s.kind, Synopsis: s.synopsis(), Example: s.example}
	}
	return out
}

// CommandWords lists every command word and alias the parser accepts.
func CommandWords() []string { return commandWords() }
