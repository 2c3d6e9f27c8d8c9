package main

import (
	"os"
	"strings"
	"testing"
)

// TestKeysStoryMatchesDocs keeps the key section of docs/operations.md and
// the story that runs it (testdata/script/keys_story.txtar) the same: the
// story's first `exec sh -c` commands are the document's block, line for
// line, so the commands an operator copies are the ones the test ran.
func TestKeysStoryMatchesDocs(t *testing.T) {
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(doc), "<!-- keys-story: begin -->\n```sh\n")
	block, _, ok2 := strings.Cut(block, "```\n<!-- keys-story: end -->")
	if !ok || !ok2 {
		t.Fatal("docs/operations.md lacks the keys-story block")
	}
	var want []string
	for _, l := range strings.Split(strings.TrimSpace(block), "\n") {
		want = append(want, l)
	}

	story, err := os.ReadFile("testdata/script/keys_story.txtar")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range strings.Split(string(story), "\n") {
		if cmd, ok := strings.CutPrefix(l, "exec sh -c '"); ok && strings.HasSuffix(cmd, "'") {
			// testscript quoting: '' inside single quotes is one quote.
			got = append(got, strings.ReplaceAll(strings.TrimSuffix(cmd, "'"), "''", "'"))
		}
	}
	if len(got) < len(want) {
		t.Fatalf("the story runs %d commands, the document shows %d", len(got), len(want))
	}
	for i, w := range want {
		if got[i] != w {
			t.Errorf("command %d:\n  docs:  %s\n  story: %s", i+1, w, got[i])
		}
	}
}
