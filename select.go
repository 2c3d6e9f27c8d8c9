package nixdeploy

import (
	"fmt"
	"path"
	"sort"
	"strings"
)

// Select expands selectors into hosts, in fleet order, without duplicates.
// A selector is a host name, "@tag", or a glob such as "rk1-*" or
// "rk1-node[1-4]". A selector that matches nothing is an error that names the
// closest host names.
func (c *Config) Select(selectors []string) ([]Host, error) {
	if len(selectors) == 0 {
		return nil, fmt.Errorf("%w: no hosts given", ErrInvalidInput)
	}
	want := make(map[string]bool)
	for _, sel := range selectors {
		matched, err := c.match(sel)
		if err != nil {
			return nil, err
		}
		for _, n := range matched {
			want[n] = true
		}
	}
	var out []Host
	for _, h := range c.Hosts {
		if want[h.Name] {
			out = append(out, h)
		}
	}
	return out, nil
}

func (c *Config) match(sel string) ([]string, error) {
	var out []string
	switch {
	case strings.HasPrefix(sel, "@"):
		tag := sel[1:]
		for _, h := range c.Hosts {
			if h.HasTag(tag) {
				out = append(out, h.Name)
			}
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("%w: no host has tag %q%s", ErrUnknownHost, tag, suggest(tag, c.tags(), "tags"))
		}
	case strings.ContainsAny(sel, "*?["):
		for _, h := range c.Hosts {
			ok, err := path.Match(sel, h.Name)
			if err != nil {
				return nil, fmt.Errorf("%w: bad pattern %q", ErrInvalidInput, sel)
			}
			if ok {
				out = append(out, h.Name)
			}
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("%w: pattern %q matches no host%s", ErrUnknownHost, sel, suggest(sel, c.names(), "hosts"))
		}
	default:
		if _, ok := c.Host(sel); !ok {
			return nil, fmt.Errorf("%w: %q%s", ErrUnknownHost, sel, suggest(sel, c.names(), "hosts"))
		}
		out = append(out, sel)
	}
	return out, nil
}

func (c *Config) names() []string {
	out := make([]string, len(c.Hosts))
	for i, h := range c.Hosts {
		out[i] = h.Name
	}
	return out
}

func (c *Config) tags() []string {
	seen := map[string]bool{}
	var out []string
	for _, h := range c.Hosts {
		for _, t := range h.Tags {
			if !seen[t] {
				seen[t] = true
				out = append(out, t)
			}
		}
	}
	return out
}

// Closest returns up to n candidates closest to s by edit distance, nearest
// first, ties in the candidates' order.
func Closest(s string, candidates []string, n int) []string {
	type cand struct {
		name string
		d    int
		i    int
	}
	cs := make([]cand, len(candidates))
	for i, c := range candidates {
		cs[i] = cand{c, levenshtein(s, c), i}
	}
	sort.SliceStable(cs, func(a, b int) bool { return cs[a].d < cs[b].d })
	var out []string
	for _, c := range cs {
		if len(out) == n {
			break
		}
		out = append(out, c.name)
	}
	return out
}

func suggest(s string, candidates []string, what string) string {
	if len(candidates) == 0 {
		return ""
	}
	return fmt.Sprintf(" (closest %s: %s)", what, strings.Join(Closest(s, candidates, 3), ", "))
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
