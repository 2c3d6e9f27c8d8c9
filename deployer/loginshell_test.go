package deployer

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixdeploy/nixdeploy/internal/sshlab"
	"github.com/nixdeploy/nixdeploy/internal/testtool"
)

// shellSSHD starts a real sshd on 127.0.0.1 whose user (root) has shell
// as its login shell. sshd takes the login shell from the passwd entry,
// and its config cannot change it, so the sshd runs in a mount namespace
// of its own where a copy of /etc/passwd with that shell is bound over
// the real one: nothing outside the namespace changes. It needs root, as
// CI runs; elsewhere the test skips.
func shellSSHD(t *testing.T, shell string) *ssh.Client {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the login shell of sshd's user can only be swapped as root")
	}
	sshd := testtool.Require(t, sshlab.SSHD)
	unshare := testtool.Require(t, "unshare")
	dir := t.TempDir()
	passwd, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	var pw []string
	for _, line := range strings.Split(strings.TrimRight(string(passwd), "\n"), "\n") {
		if f := strings.Split(line, ":"); len(f) == 7 && f[0] == "root" {
			f[6] = shell
			line = strings.Join(f, ":")
		}
		pw = append(pw, line)
	}
	writeFile(t, filepath.Join(dir, "passwd"), strings.Join(pw, "\n")+"\n", 0o644)
	hostKey := filepath.Join(dir, "host_ed25519")
	testtool.Run(t, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostKey)
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "authorized_keys"), string(ssh.MarshalAuthorizedKey(signer.PublicKey())), 0o600)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
AuthorizedKeysFile %s
PidFile %s
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
SetEnv PATH=/usr/local/bin:/usr/bin:/bin
`, port, hostKey, filepath.Join(dir, "authorized_keys"), filepath.Join(dir, "sshd.pid"))
	writeFile(t, filepath.Join(dir, "sshd_config"), cfg, 0o644)
	var logb bytes.Buffer
	cmd := exec.Command(unshare, "--mount", "--propagation", "private", "sh", "-c",
		`mount --bind "$1" /etc/passwd && exec "$2" -D -e -f "$3"`, "sh", filepath.Join(dir, "passwd"), sshd, filepath.Join(dir, "sshd_config"))
	cmd.Stdout, cmd.Stderr = &logb, &logb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pub, err := os.ReadFile(hostKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	hk, _, _, _, err := ssh.ParseAuthorizedKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	conf := &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.FixedHostKey(hk), Timeout: 5 * time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := ssh.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), conf)
		if err == nil {
			t.Cleanup(func() { c.Close() })
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd with login shell %s: %v\n%s", shell, err, logb.String())
		}
		time.Sleep(20 * time.Millisecond) // polling a starting daemon; no event to wait on
	}
}

func writeFile(t *testing.T, path, text string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
}

// TestRemoteCommandLoginShells: over real sshd, with bash, dash, zsh and
// fish as the login shell, every tricky argv element reaches the command
// unchanged, the flake value of issue 15's attack 4 runs nothing, stdin
// still reaches the command, and the reported process group is the
// command's own.
func TestRemoteCommandLoginShells(t *testing.T) {
	for _, name := range []string{"bash", "dash", "zsh", "fish"} {
		t.Run(name, func(t *testing.T) {
			shell := testtool.Require(t, name)
			c := shellSSHD(t, shell)
			run := func(cmd string, stdin string) (string, string) {
				t.Helper()
				s, err := c.NewSession()
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				var out, errb bytes.Buffer
				s.Stdout, s.Stderr, s.Stdin = &out, &errb, strings.NewReader(stdin)
				if err := s.Run(cmd); err != nil {
					t.Fatalf("%v: %s", err, errb.String())
				}
				return out.String(), errb.String()
			}

			marker := filepath.Join(t.TempDir(), "pwned")
			attack := `\'(touch ` + marker + `)\'#ganon`
			// The flake value alone first: in fish, POSIX quoting ran it.
			if s, err := c.NewSession(); err == nil {
				_ = s.Run(remoteCommand([]string{"printf", "%s", attack}))
				s.Close()
			}
			if _, err := os.Stat(marker); err == nil {
				t.Fatalf("the flake value %q ran touch", attack)
			}
			args := append([]string{attack, "$(touch " + marker + ")", "`touch " + marker + "`"}, tricky...)
			const sep = "\x1f"
			out, errs := run(remoteCommand(append([]string{"printf", "%s" + sep}, args...)), "")
			if want := strings.Join(args, sep) + sep; out != want {
				t.Errorf("printf saw\n%q\nwant\n%q", out, want)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Fatal("a quoted argument ran a command")
			}
			if !strings.HasPrefix(errs, pgidMarker) {
				t.Errorf("no process group reported: %q", errs)
			}

			out, _ = run(remoteCommand([]string{"cat"}), "stdin reaches the command\n")
			if out != "stdin reaches the command\n" {
				t.Errorf("cat got %q", out)
			}

			// The command's process group, from /proc, is the one the
			// wrapper reported: a cancel kills the right group.
			out, errs = run(remoteCommand([]string{"sh", "-c", `cut -d' ' -f5 /proc/$$/stat`}), "")
			pg, _ := strings.CutPrefix(strings.SplitN(errs, "\n", 2)[0], pgidMarker)
			if strings.TrimSpace(out) != pg {
				t.Errorf("process group %q, reported %q", strings.TrimSpace(out), pg)
			}
		})
	}
}

// TestDecodeRemote: the simulator's decoder inverts remoteScript for every
// byte, and refuses what the deployer does not send.
func TestDecodeRemote(t *testing.T) {
	var all []byte
	for i := 1; i < 256; i++ {
		all = append(all, byte(i))
	}
	for _, s := range append([]string{string(all), ""}, tricky...) {
		if got, ok := DecodeRemote(remoteScript(s)); !ok || got != s {
			t.Errorf("DecodeRemote(remoteScript(%q)) = %q, %v", s, got, ok)
		}
	}
	for _, bad := range []string{"readlink /run/current-system", remotePrefix + `\400` + remoteSuffix, remotePrefix + `\12` + remoteSuffix, remotePrefix + `x123` + remoteSuffix} {
		if _, ok := DecodeRemote(bad); ok {
			t.Errorf("DecodeRemote(%q) accepted", bad)
		}
	}
}
