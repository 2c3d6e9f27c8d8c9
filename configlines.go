package nixdeploy

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// locateProblems prefixes each validation problem with the config line it
// is about ("line 42: host \"ganon\": …"), so an operator with a long config
// goes straight there. go-toml's decoder does not keep positions for decoded
// values, so the lines come from a scan of the file's table headers and
// keys; a problem it cannot place keeps its text as is.
func locateProblems(data []byte, probs []string) []string {
	idx := indexConfigLines(data)
	out := make([]string, len(probs))
	for i, p := range probs {
		if n := idx.lineOf(p); n > 0 {
			out[i] = fmt.Sprintf("line %d: %s", n, p)
		} else {
			out[i] = p
		}
	}
	return out
}

// configTable is one [table] or [[array]] entry of the file: where it
// starts and the first line of each key in it. Sub-tables such as
// [hosts.initrd_ssh] belong to the entry above them, under "initrd_ssh.".
type configTable struct {
	header int
	keys   map[string]int
}

type configIndex struct {
	tables map[string]*configTable   // [runner], [runner.jump], [secrets], [slack]
	arrays map[string][]*configTable // [[hosts]], [[schedules]]
}

var (
	arrayHeaderRE = regexp.MustCompile(`^\s*\[\[\s*([A-Za-z0-9_.-]+)\s*\]\]`)
	tableHeaderRE = regexp.MustCompile(`^\s*\[\s*([A-Za-z0-9_.-]+)\s*\]`)
	keyRE         = regexp.MustCompile(`^\s*([A-Za-z0-9_-]+)\s*=`)
	nameValueRE   = regexp.MustCompile(`^\s*name\s*=\s*"([^"]*)"`)
)

func indexConfigLines(data []byte) *configIndex {
	idx := &configIndex{tables: map[string]*configTable{}, arrays: map[string][]*configTable{}}
	// Keys before the first header: flake, installer_flake.
	cur := &configTable{keys: map[string]int{}}
	idx.tables[""] = cur
	prefix := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if m := arrayHeaderRE.FindStringSubmatch(line); m != nil {
			cur = &configTable{header: n, keys: map[string]int{}}
			idx.arrays[m[1]] = append(idx.arrays[m[1]], cur)
			prefix = ""
			continue
		}
		if m := tableHeaderRE.FindStringSubmatch(line); m != nil {
			name := m[1]
			// [hosts.initrd_ssh] after a [[hosts]] entry is that host's.
			if arr, sub, ok := strings.Cut(name, "."); ok && len(idx.arrays[arr]) > 0 {
				cur = idx.arrays[arr][len(idx.arrays[arr])-1]
				prefix = sub + "."
				if _, seen := cur.keys[sub]; !seen {
					cur.keys[sub] = n
				}
				continue
			}
			cur = &configTable{header: n, keys: map[string]int{}}
			idx.tables[name] = cur
			prefix = ""
			continue
		}
		if m := keyRE.FindStringSubmatch(line); m != nil && cur != nil {
			if _, seen := cur.keys[prefix+m[1]]; !seen {
				cur.keys[prefix+m[1]] = n
			}
			if prefix == "" && m[1] == "name" {
				if v := nameValueRE.FindStringSubmatch(line); v != nil {
					cur.keys["\x00name="+v[1]] = n
				}
			}
		}
	}
	return idx
}

var (
	entryRE = regexp.MustCompile(`^(host|schedule) "([^"]*)": (.*)$`)
	indexRE = regexp.MustCompile(`^(hosts|schedules|health_checks)\[(\d+)\]: (.*)$`)
	tableRE = regexp.MustCompile(`^([a-z_]+(?:\.[a-z_]+)?)(?:\.([a-z_]+))?: `)
	alsoRE  = regexp.MustCompile(`\(also (?:hosts|schedules)\[(\d+)\]\)`)
)

// lineOf finds the line a problem from Validate is about.
func (idx *configIndex) lineOf(p string) int {
	var entry *configTable
	var rest string
	if m := entryRE.FindStringSubmatch(p); m != nil {
		arr := m[1] + "s"
		// "duplicate … name (also hosts[j])" is about the other entry of
		// that name.
		skip := -1
		if d := alsoRE.FindStringSubmatch(m[3]); d != nil {
			skip, _ = strconv.Atoi(d[1])
		}
		for i, t := range idx.arrays[arr] {
			if _, ok := t.keys["\x00name="+m[2]]; ok && i != skip {
				entry = t
				break
			}
		}
		rest = m[3]
	} else if m := indexRE.FindStringSubmatch(p); m != nil {
		i, _ := strconv.Atoi(m[2])
		if i < len(idx.arrays[m[1]]) {
			entry = idx.arrays[m[1]][i]
		}
		rest = m[3]
	}
	if entry != nil {
		// The field the problem names, when the entry sets it: "disk
		// \"x\" must …", "initrd_ssh.port 70000 …", "phases: …".
		// The first words before any quoted value or colon, which is
		// where Validate names the field.
		head := rest
		if i := strings.IndexAny(head, "\":("); i >= 0 {
			head = head[:i]
		}
		for _, w := range strings.Fields(head) {
			if n, ok := entry.keys[w]; ok {
				return n
			}
		}
		return entry.header
	}
	if m := tableRE.FindStringSubmatch(p); m != nil {
		for _, name := range []string{m[1] + "." + m[2], m[1]} {
			if t, ok := idx.tables[name]; ok {
				if n, ok := t.keys[m[2]]; ok && m[2] != "" {
					return n
				}
				return t.header
			}
		}
		if t, ok := idx.tables[strings.SplitN(m[1], ".", 2)[0]]; ok {
			if _, key, ok := strings.Cut(m[1], "."); ok {
				if n, ok := t.keys[key]; ok {
					return n
				}
			}
			return t.header
		}
		if n, ok := idx.tables[""].keys[m[1]]; ok {
			return n
		}
	}
	return 0
}

// Locate prefixes problems found after loading (such as the key workflow's
// objections) with their config line, as LoadConfig does for its own. It
// rereads the file; problems stay as they are when it cannot.
func (c *Config) Locate(probs []string) []string {
	data, err := os.ReadFile(c.Path)
	if err != nil {
		return probs
	}
	return locateProblems(data, probs)
}
