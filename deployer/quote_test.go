package deployer

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/nixdeploy/nixdeploy/internal/sshlab"
)

var tricky = []string{
	"", " ", "plain", "two words", "'", "''", `"`, `it's`, `$HOME`, `${PATH}`, "$(id)", "`id`",
	`\`, `\\'`, "a\nb", "trailing\n", "\ttab", "*", "?", "[a]", "~", "~root", "#comment", "=cmd",
	"-n", "--", "-e", ";rm -rf /", "&& echo pwned", "| cat", "> /tmp/x", "!event", "{a,b}",
	"a'b\"c$d`e\\f", "%s%d", "x=$((1+1))", "é ü 日本", "root@127.0.0.2", "/flake#host",
	"NIX_SSHOPTS=-p 22", "'\\''", "\x01\x7f",
}

// TestShellQuote sends each tricky string, quoted by shellQuote, through a
// real sshd to the login shell and through the remote wrapper the deployer
// uses, and through sh -c locally; printf must see it unchanged.
func TestShellQuote(t *testing.T) {
	t.Parallel()
	lab := sshlab.New(t, sshlab.Options{})
	c, err := ssh.Dial("tcp", lab.Runner.Addr, &ssh.ClientConfig{
		User:            lab.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(lab.Client)},
		HostKeyCallback: ssh.FixedHostKey(lab.Runner.HostKey),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	remote := func(cmd string) []byte {
		t.Helper()
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var out, errb bytes.Buffer
		s.Stdout, s.Stderr = &out, &errb
		if err := s.Run(cmd); err != nil {
			t.Fatalf("%q: %v: %s", cmd, err, errb.String())
		}
		return out.Bytes()
	}
	// One session per path: every login shell costs a fork and rc files.
	const sep = "\x1f"
	want := strings.Join(tricky, sep) + sep
	quoted := make([]string, len(tricky))
	for i, s := range tricky {
		quoted[i] = shellQuote(s)
	}
	check := func(path string, got []byte) {
		t.Helper()
		if string(got) == want {
			return
		}
		gotParts := strings.Split(string(got), sep)
		for i, s := range tricky {
			if i >= len(gotParts) || gotParts[i] != s {
				t.Errorf("%s: %q came back as %q", path, s, gotParts[min(i, len(gotParts)-1)])
				return
			}
		}
		t.Errorf("%s: got %q", path, got)
	}
	check("login shell", remote("printf "+shellQuote("%s"+sep)+" "+strings.Join(quoted, " ")))
	check("wrapper", remote(remoteCommand(append([]string{"printf", "%s" + sep}, tricky...))))
	out, err := exec.Command("sh", "-c", "printf "+shellQuote("%s"+sep)+" "+strings.Join(quoted, " ")).Output()
	if err != nil {
		t.Fatal(err)
	}
	check("sh -c", out)
	if got := shellJoin([]string{"nixos-rebuild", "switch", "--flake", "/f#h", "--target-host", "root@10.0.0.1"}); got != "nixos-rebuild switch --flake '/f#h' --target-host root@10.0.0.1" {
		t.Errorf("shellJoin = %s", got)
	}
}
