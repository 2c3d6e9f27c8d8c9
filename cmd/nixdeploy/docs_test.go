package main

import (
	"errors"
	"os"
	"os/exec"
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
	want := strings.Split(strings.TrimSpace(block), "\n")

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

// TestGitignoreKeepsWhatDocsCommit: the docs say to commit the .pub and
// sealed .age files and never the plaintext keys; .gitignore must agree.
func TestGitignoreKeepsWhatDocsCommit(t *testing.T) {
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git is not installed")
	}
	ignored := func(path string) bool {
		cmd := exec.Command(git, "check-ignore", "-q", "--no-index", path)
		cmd.Dir = "../.."
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return true
		case errors.As(err, &ee) && ee.ExitCode() == 1:
			return false
		}
		t.Skipf("git check-ignore: %v (not a git checkout?)", err)
		return false
	}
	for _, p := range []string{"ganon_ssh_host_ed25519_key.pub", "ganon_ssh_host_ed25519_key.age", "ganon_user_age_key.age",
		"ganon_disk_key.age", "ganon_initrd_ssh_host_ed25519_key.pub", "ganon_initrd_ssh_host_ed25519_key.age"} {
		if ignored("examples/fleet/keys/" + p) {
			t.Errorf(".gitignore ignores %s, which docs/operations.md says to commit", p)
		}
	}
	for _, p := range []string{"keys/ganon_ssh_host_ed25519_key", "keys/ganon_user_age_key", "keys/ganon_disk_key",
		"keys/ganon_initrd_ssh_host_ed25519_key", "bot.agekey", "bot_ssh"} {
		if !ignored("examples/fleet/" + p) {
			t.Errorf(".gitignore lets %s be committed; it is a plaintext private key", p)
		}
	}
}
