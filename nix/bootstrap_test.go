package nix_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Stubs for the tools bootstrap-nixos.sh drives. Each records what it was
// given under $STUB_LOG, where the test reads it back.
const (
	// nixos-anywhere's own parser (src/nixos-anywhere.sh): --extra-files
	// takes one value, --disk-encryption-keys two (remote path, local file),
	// and the local key file is read with a shell redirect when uploading,
	// so a missing one fails. The tree is copied keeping modes
	// (tar -cpf- . | tar -xf- --no-same-owner).
	stubAnywhere = `#!/usr/bin/env bash
set -euo pipefail
printf '%s\n' "$@" >"$STUB_LOG/anywhere.args"
printf '%s\n' "$SHELL" >"$STUB_LOG/anywhere.shell"
extra='' args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
	case ${args[i]} in
	--extra-files) extra=${args[i + 1]} ;;
	--disk-encryption-keys)
		remote=${args[i + 1]} local=${args[i + 2]}
		[[ -r $local ]] || { echo "stub: $local: No such file or directory" >&2; exit 1; }
		printf '%s %s\n' "$remote" "$(stat -c %a "$local")" >"$STUB_LOG/disk-key.meta"
		cp "$local" "$STUB_LOG/disk-key.seen"
		printf '%s\n' "$local" >"$STUB_LOG/disk-key.path"
		;;
	esac
done
[[ -n $extra ]] || { echo 'stub: no --extra-files' >&2; exit 97; }
printf '%s\n' "$extra" >"$STUB_LOG/extra-files.path"
cd "$extra"
# sshd refuses a host key that is not 0600.
[[ $(stat -c %a etc/ssh/ssh_host_ed25519_key) == 600 ]] || { echo 'stub: host key is not 0600' >&2; exit 98; }
find . -exec stat -c '%a %n' {} + | sort -k2 >"$STUB_LOG/extra-files.tree"
cp etc/ssh/ssh_host_ed25519_key "$STUB_LOG/host-key.seen"
if [[ -e etc/secrets/initrd/ssh_host_ed25519_key ]]; then
	cp etc/secrets/initrd/ssh_host_ed25519_key "$STUB_LOG/initrd-key.seen"
fi
echo '### Formatting hard drive with disko ###'
echo '### Done! ###'
exit "${STUB_ANYWHERE_EXIT:-0}"
`
	stubRebuild = `#!/usr/bin/env bash
set -euo pipefail
printf '%s\n' "$@" >"$STUB_LOG/rebuild.args"
printf '%s\n' "$NIX_SSHOPTS" >"$STUB_LOG/rebuild.sshopts"
if [[ -e $(cat "$STUB_LOG/extra-files.path") ]]; then echo present; else echo gone; fi >"$STUB_LOG/rebuild.extra-files"
exit "${STUB_REBUILD_EXIT:-0}"
`
	// The initrd's cryptsetup-askpass (nixpkgs luksroot.nix, askPass):
	// prompts, reads one line with "IFS= read -rs", dies "End of file
	// reached" when asked again after a wrong passphrase, and otherwise
	// exits 1 with "Passphrase is not requested now" once nothing asks.
	stubSSH = `#!/usr/bin/env bash
set -euo pipefail
printf '%s\n' "$*" >>"$STUB_LOG/ssh.calls"
for a in "$@"; do
	case $a in UserKnownHostsFile=*) cp "${a#*=}" "$STUB_LOG/known_hosts.seen" ;; esac
done
if [[ -n ${STUB_SSH_FAIL:-} ]]; then
	echo 'ssh: connect to host 192.0.2.1 port 22: Connection refused' >&2
	exit 255
fi
case ${*: -1} in
*readlink*)
	echo /nix/store/00000000000000000000000000000000-nixos-system-test
	echo "${STUB_STATE:-running}"
	;;
cryptsetup-askpass)
	printf '%s\n' "$*" >"$STUB_LOG/askpass.call"
	printf 'Passphrase for /dev/disk/by-partlabel/disk-main-luks: '
	IFS= read -rs passphrase || { echo 'End of file reached. Exiting shell.' >&2; exit 1; }
	printf '%s' "$passphrase" >"$STUB_LOG/askpass.passphrase"
	if [[ -n ${STUB_ASKPASS_REJECT:-} ]]; then
		printf 'Passphrase for /dev/disk/by-partlabel/disk-main-luks: '
		IFS= read -rs passphrase || { echo 'End of file reached. Exiting shell.' >&2; exit 1; }
	fi
	echo 'Passphrase is not requested now' >&2
	exit 1
	;;
esac
`
)

// scriptEnv is a sandbox for one bootstrap-nixos.sh run: stubs, a keys dir,
// an operator identity, and a private TMPDIR that must be empty afterwards.
type scriptEnv struct {
	base, log, tmp, keys, identity string
	env                            []string
}

func newScriptEnv(t *testing.T) *scriptEnv {
	t.Helper()
	requireTool(t, "bash")
	// The script reads the host's facts from hosts/fleet.nix with it.
	nixInstantiate := requireTool(t, "nix-instantiate")
	base := t.TempDir()
	e := &scriptEnv{
		base:     base,
		log:      filepath.Join(base, "log"),
		tmp:      filepath.Join(base, "tmp"),
		keys:     filepath.Join(base, "keys"),
		identity: filepath.Join(base, "id_ed25519"),
	}
	bin := filepath.Join(base, "bin")
	for _, d := range []string{e.log, e.tmp, e.keys, bin} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	stubs := map[string]string{"nixos-anywhere": stubAnywhere, "nixos-rebuild": stubRebuild, "ssh": stubSSH}
	for name, body := range stubs {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The stubs never read it; it only has to exist.
	if err := os.WriteFile(e.identity, []byte("operator identity\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.env = append(cleanEnv("FLAKE_DIR", "SSH", "SSH_WAIT_TIMEOUT", "NIXOS_ANYWHERE", "NIXOS_REBUILD"),
		"HOME="+base,
		"TMPDIR="+e.tmp,
		"STUB_LOG="+e.log,
		"NIXOS_ANYWHERE="+filepath.Join(bin, "nixos-anywhere"),
		"NIXOS_REBUILD="+filepath.Join(bin, "nixos-rebuild"),
		"SSH="+filepath.Join(bin, "ssh"),
		// Real nix-instantiate, kept away from /nix (see runNix).
		"NIX_INSTANTIATE="+nixInstantiate+" --store dummy://",
		"NIX_STATE_DIR="+filepath.Join(base, "nix-state"),
		// Fail on the first unanswered probe instead of retrying.
		"SSH_WAIT_TIMEOUT=0",
	)
	return e
}

func (e *scriptEnv) keygen(t *testing.T, name, comment string) string {
	t.Helper()
	keygen := requireTool(t, "ssh-keygen")
	path := filepath.Join(e.keys, name)
	out, err := exec.CommandContext(t.Context(), keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	return path
}

// addHostKey creates keys/<host>_ssh_host_ed25519_key(.pub) as
// `nixdeploy keys init` would.
func (e *scriptEnv) addHostKey(t *testing.T, host string) string {
	return e.keygen(t, host+"_ssh_host_ed25519_key", "root@"+host)
}

// addInitrdKey creates keys/<host>_initrd_ssh_host_ed25519_key(.pub).
func (e *scriptEnv) addInitrdKey(t *testing.T, host string) string {
	return e.keygen(t, host+"_initrd_ssh_host_ed25519_key", "initrd@"+host)
}

const passphrase = "correct horse battery staple"

// addDiskKey writes keys/<host>_disk_key as the key store keeps it: 0600,
// no trailing newline.
func (e *scriptEnv) addDiskKey(t *testing.T, host, content string) string {
	t.Helper()
	path := filepath.Join(e.keys, host+"_disk_key")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// addKeys gives host every key its hosts/fleet.nix entry needs.
func (e *scriptEnv) addKeys(t *testing.T, host string) {
	e.addHostKey(t, host)
	if host == "ganon" {
		e.addDiskKey(t, host, passphrase)
		e.addInitrdKey(t, host)
	}
}

type scriptResult struct {
	code           int
	stdout, stderr string
}

func (e *scriptEnv) run(t *testing.T, extraEnv []string, args ...string) scriptResult {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), filepath.Join(nixDir(t), "scripts/bootstrap-nixos.sh"), args...)
	cmd.Dir = e.base
	cmd.Env = append(slices.Clone(e.env), extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	res := scriptResult{stdout: stdout.String(), stderr: stderr.String()}
	switch {
	case errors.As(err, &exit):
		res.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run bootstrap-nixos.sh: %v", err)
	}
	return res
}

func (e *scriptEnv) logFile(t *testing.T, name string) (string, bool) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.log, name))
	if errors.Is(err, fs.ErrNotExist) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b), true
}

func (e *scriptEnv) lines(t *testing.T, name string) []string {
	t.Helper()
	s, ok := e.logFile(t, name)
	if !ok {
		t.Fatalf("%s not written: the stub was not called", name)
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// assertTmpEmpty checks that the script removed everything it created in
// TMPDIR: the temp dir holds private keys and the disk passphrase.
func (e *scriptEnv) assertTmpEmpty(t *testing.T) {
	t.Helper()
	left, err := os.ReadDir(e.tmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range left {
		t.Errorf("left behind in TMPDIR: %s", d.Name())
	}
}

func TestBootstrapUsage(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no flags", nil, "missing -n HOST"},
		{"missing destination", []string{"-n", "ganon", "-k", "ID"}, "missing -d DEST"},
		{"missing key", []string{"-n", "ganon", "-d", "192.0.2.1"}, "missing -k KEY"},
		{"unknown flag", []string{"-n", "ganon", "-d", "192.0.2.1", "-k", "ID", "-z"}, "unknown flag -z"},
		// The passphrase comes from the keys dir, as in the bot.
		{"old passphrase flag", []string{"-n", "ganon", "-d", "192.0.2.1", "-k", "ID", "-e", "x"}, "unknown flag -e"},
		{"flag without value", []string{"-n", "ganon", "-d", "192.0.2.1", "-k"}, "-k needs a value"},
		{"port not a number", []string{"-n", "ganon", "-d", "192.0.2.1", "-k", "ID", "-p", "ssh"}, "bad port"},
		{"port zero", []string{"-n", "ganon", "-d", "192.0.2.1", "-k", "ID", "-p", "0"}, "bad port"},
		{"port too large", []string{"-n", "ganon", "-d", "192.0.2.1", "-k", "ID", "-p", "65536"}, "bad port"},
		{"host is a path", []string{"-n", "../../etc/passwd", "-d", "192.0.2.1", "-k", "ID"}, "bad host name"},
		{"destination is an ssh option", []string{"-n", "ganon", "-d", "-oProxyCommand=sh", "-k", "ID"}, "bad destination"},
		{"destination with user", []string{"-n", "ganon", "-d", "root@192.0.2.1", "-k", "ID"}, "bad destination"},
		{"stray argument", []string{"-n", "ganon", "-d", "192.0.2.1", "-k", "ID", "extra"}, "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newScriptEnv(t)
			args := slices.Clone(tt.args)
			for i, a := range args {
				if a == "ID" {
					args[i] = e.identity
				}
			}
			res := e.run(t, nil, args...)
			if res.code != 2 {
				t.Errorf("exit code %d, want 2\nstderr: %s", res.code, res.stderr)
			}
			if !strings.Contains(res.stderr, tt.wantErr) || !strings.Contains(res.stderr, "usage: bootstrap-nixos.sh") {
				t.Errorf("stderr lacks %q and the usage:\n%s", tt.wantErr, res.stderr)
			}
			if _, called := e.logFile(t, "anywhere.args"); called {
				t.Error("nixos-anywhere ran despite a usage error")
			}
		})
	}

	t.Run("help", func(t *testing.T) {
		e := newScriptEnv(t)
		res := e.run(t, nil, "-h")
		if res.code != 0 || !strings.Contains(res.stdout, "usage: bootstrap-nixos.sh") || !strings.Contains(res.stdout, "keys unseal") {
			t.Errorf("-h: exit %d, stdout %q", res.code, res.stdout)
		}
	})
}

func TestBootstrapInstall(t *testing.T) {
	dir := nixDir(t)
	tests := []struct {
		name        string
		host        string
		args        []string // ID and KEYS are replaced by the sandbox's paths
		wantAnyArgs []string // EXTRA and DISKKEY stand for the temp dir's files
		wantRebuild []string
		wantTree    []string
		wantPort    string // where the installed system answers: fleet.nix's sshPort
	}{
		{
			name: "aarch64 node builds on target",
			host: "rk1-node1",
			args: []string{"-n", "rk1-node1", "-d", "192.0.2.11", "-k", "ID", "-K", "KEYS", "-b"},
			wantAnyArgs: []string{"--ssh-port", "22", "-i", "ID", "--extra-files", "EXTRA",
				"--build-on", "remote",
				"--flake", dir + "/nixos-installer#rk1-node1", "root@192.0.2.11"},
			wantRebuild: []string{"switch", "--flake", dir + "#rk1-node1",
				"--target-host", "root@192.0.2.11", "--build-host", "root@192.0.2.11"},
			wantTree: []string{
				"755 .",
				"755 ./etc",
				"755 ./etc/ssh",
				"600 ./etc/ssh/ssh_host_ed25519_key",
				"644 ./etc/ssh/ssh_host_ed25519_key.pub",
			},
			wantPort: "22",
		},
		{
			// -p is the port of the OS being replaced; afterwards the host
			// answers on fleet.nix's sshPort.
			name: "ganon: disk key, initrd key and unlock",
			host: "ganon",
			args: []string{"-n", "ganon", "-d", "192.0.2.100", "-k", "ID", "-K", "KEYS", "-p", "2200"},
			wantAnyArgs: []string{"--ssh-port", "2200", "-i", "ID", "--extra-files", "EXTRA",
				"--disk-encryption-keys", luksRemoteKey, "DISKKEY",
				"--flake", dir + "/nixos-installer#ganon", "root@192.0.2.100"},
			wantRebuild: []string{"switch", "--flake", dir + "#ganon", "--target-host", "root@192.0.2.100"},
			wantTree: []string{
				"755 .",
				"755 ./etc",
				"700 ./etc/secrets",
				"700 ./etc/secrets/initrd",
				"600 ./etc/secrets/initrd/ssh_host_ed25519_key",
				"755 ./etc/ssh",
				"600 ./etc/ssh/ssh_host_ed25519_key",
				"644 ./etc/ssh/ssh_host_ed25519_key.pub",
			},
			wantPort: "22",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newScriptEnv(t)
			e.addKeys(t, tt.host)
			hostKey := filepath.Join(e.keys, tt.host+"_ssh_host_ed25519_key")
			subst := strings.NewReplacer("ID", e.identity, "KEYS", e.keys)
			args := make([]string, len(tt.args))
			for i, a := range tt.args {
				args[i] = subst.Replace(a)
			}

			res := e.run(t, nil, args...)
			if res.code != 0 {
				t.Fatalf("exit code %d\nstdout: %s\nstderr: %s", res.code, res.stdout, res.stderr)
			}
			if !strings.Contains(res.stdout, "### Done! ###") {
				t.Errorf("nixos-anywhere's output was not passed through:\n%s", res.stdout)
			}

			// The bot's layout: <tmp>/extra-files and <tmp>/disk.key.
			extra := strings.TrimSpace(e.lines(t, "extra-files.path")[0])
			work := filepath.Dir(extra)
			if filepath.Base(extra) != "extra-files" || filepath.Dir(work) != e.tmp {
				t.Errorf("extra-files dir %s is not <tmp>/extra-files under TMPDIR %s", extra, e.tmp)
			}
			gotAny := e.lines(t, "anywhere.args")
			for i, a := range gotAny {
				switch a {
				case extra:
					gotAny[i] = "EXTRA"
				case filepath.Join(work, "disk.key"):
					gotAny[i] = "DISKKEY"
				}
			}
			wantAny := make([]string, len(tt.wantAnyArgs))
			for i, a := range tt.wantAnyArgs {
				wantAny[i] = subst.Replace(a)
			}
			if !slices.Equal(gotAny, wantAny) {
				t.Errorf("nixos-anywhere argv:\n got %q\nwant %q", gotAny, wantAny)
			}
			if got := e.lines(t, "anywhere.shell"); got[0] != "/bin/sh" {
				t.Errorf("nixos-anywhere ran with SHELL=%s, want /bin/sh", got[0])
			}
			if got := e.lines(t, "extra-files.tree"); !slices.Equal(got, tt.wantTree) {
				t.Errorf("extra-files tree:\n got %q\nwant %q", got, tt.wantTree)
			}
			seen, _ := e.logFile(t, "host-key.seen")
			if orig, err := os.ReadFile(hostKey); err != nil || seen != string(orig) {
				t.Errorf("the installed host key is not keys/%s_ssh_host_ed25519_key (read err %v)", tt.host, err)
			}

			if got := e.lines(t, "rebuild.args"); !slices.Equal(got, tt.wantRebuild) {
				t.Errorf("nixos-rebuild argv:\n got %q\nwant %q", got, tt.wantRebuild)
			}
			if got := e.lines(t, "rebuild.extra-files"); got[0] != "gone" {
				t.Error("the extra-files dir (a private key) still existed during nixos-rebuild")
			}
			opts := e.lines(t, "rebuild.sshopts")[0]
			for _, want := range []string{"StrictHostKeyChecking=yes", "-i " + e.identity, "-p " + tt.wantPort, "UserKnownHostsFile=", "HostKeyAlias=nixdeploy-" + tt.host} {
				if !strings.Contains(opts, want) {
					t.Errorf("NIX_SSHOPTS %q lacks %q", opts, want)
				}
			}

			// Every ssh after the install pins the pre-generated keys.
			pinned := func(alias, pubFile string) string {
				pub, err := os.ReadFile(pubFile)
				if err != nil {
					t.Fatal(err)
				}
				f := strings.Fields(string(pub))
				return fmt.Sprintf("%s %s %s\n", alias, f[0], f[1])
			}
			wantKH := pinned("nixdeploy-"+tt.host, hostKey+".pub")
			calls := e.lines(t, "ssh.calls")
			if tt.host == "ganon" {
				initrdKey := filepath.Join(e.keys, "ganon_initrd_ssh_host_ed25519_key")
				wantKH += pinned("nixdeploy-ganon-initrd", initrdKey+".pub")
				seen, _ := e.logFile(t, "initrd-key.seen")
				if orig, err := os.ReadFile(initrdKey); err != nil || seen != string(orig) {
					t.Errorf("the initrd host key in extra-files is not keys/ganon_initrd_ssh_host_ed25519_key (read err %v)", err)
				}
				if meta, _ := e.logFile(t, "disk-key.meta"); meta != luksRemoteKey+" 600\n" {
					t.Errorf("disk key given to nixos-anywhere: %q, want %s with mode 600", meta, luksRemoteKey)
				}
				if got, _ := e.logFile(t, "disk-key.seen"); got != passphrase {
					t.Errorf("disk key content %q, want keys/ganon_disk_key's %q", got, passphrase)
				}
				if got, _ := e.logFile(t, "askpass.passphrase"); got != passphrase {
					t.Errorf("cryptsetup-askpass read %q, want the disk passphrase", got)
				}
				call := e.lines(t, "askpass.call")[0]
				for _, want := range []string{"-p 2222", "HostKeyAlias=nixdeploy-ganon-initrd", "StrictHostKeyChecking=yes", "root@192.0.2.100 cryptsetup-askpass"} {
					if !strings.Contains(call, want) {
						t.Errorf("unlock ssh %q lacks %q", call, want)
					}
				}
				// Wait for the initrd, unlock, wait for the system, verify.
				if len(calls) != 4 || !strings.Contains(calls[0], "-p 2222") || !strings.Contains(calls[2], "-p 22 ") {
					t.Errorf("ssh calls = %q, want initrd wait, unlock, system wait, verify", calls)
				}
			} else if _, unlocked := e.logFile(t, "askpass.call"); unlocked {
				t.Error("cryptsetup-askpass ran for a host without LUKS")
			}
			if got, _ := e.logFile(t, "known_hosts.seen"); got != wantKH {
				t.Errorf("known_hosts given to ssh = %q, want %q", got, wantKH)
			}
			if len(calls) < 2 || !strings.HasSuffix(calls[0], " root@"+args[3]+" true") || !strings.Contains(calls[len(calls)-1], "systemctl is-system-running") {
				t.Errorf("ssh calls = %q, want a wait for SSH first and a verify last", calls)
			}
			if p, ok := e.logFile(t, "disk-key.path"); ok {
				if _, err := os.Stat(strings.TrimSpace(p)); err == nil {
					t.Error("the disk key copy still exists after the run")
				}
			}
			e.assertTmpEmpty(t)
		})
	}
}

func TestBootstrapFailures(t *testing.T) {
	tests := []struct {
		name        string
		host        string // default rk1-node2
		setup       func(t *testing.T, e *scriptEnv, host string)
		env         []string
		wantAnyCall bool
		wantRebuild bool
		wantErr     string
	}{
		{
			name:        "nixos-anywhere fails",
			env:         []string{"STUB_ANYWHERE_EXIT=1"},
			wantAnyCall: true,
			wantErr:     "nixos-anywhere failed",
		},
		{
			name:        "host does not come back",
			env:         []string{"STUB_SSH_FAIL=1"},
			wantAnyCall: true,
			wantErr:     "did not come back",
		},
		{
			name:        "nixos-rebuild fails",
			env:         []string{"STUB_REBUILD_EXIT=1"},
			wantAnyCall: true,
			wantRebuild: true,
			wantErr:     "nixos-rebuild switch failed",
		},
		{
			name:        "degraded after switch",
			env:         []string{"STUB_STATE=degraded"},
			wantAnyCall: true,
			wantRebuild: true,
			wantErr:     "is degraded",
		},
		{
			name:    "no host key",
			setup:   func(t *testing.T, e *scriptEnv, host string) {},
			wantErr: "not found",
		},
		{
			name: "public key does not match",
			setup: func(t *testing.T, e *scriptEnv, host string) {
				e.addHostKey(t, host)
				other := e.addHostKey(t, "other")
				pub, err := os.ReadFile(other + ".pub")
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(e.keys, host+"_ssh_host_ed25519_key.pub"), pub, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "does not match",
		},
		{
			name: "host key readable by others",
			setup: func(t *testing.T, e *scriptEnv, host string) {
				if err := os.Chmod(e.addHostKey(t, host), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "mode 644",
		},
		{
			name:    "host not in fleet.nix",
			host:    "rk1-node9",
			wantErr: "rk1-node9 is not in hosts/fleet.nix",
		},
		// ganon encrypts its disk: without the key, disko would wipe the
		// disk and then fail in cryptsetup. Refused before anything runs.
		{
			name: "LUKS host without disk key",
			host: "ganon",
			setup: func(t *testing.T, e *scriptEnv, host string) {
				e.addHostKey(t, host)
				e.addInitrdKey(t, host)
			},
			wantErr: "ganon encrypts its disk, but " + "KEYS/ganon_disk_key is missing",
		},
		{
			name: "disk key with trailing newline",
			host: "ganon",
			setup: func(t *testing.T, e *scriptEnv, host string) {
				e.addHostKey(t, host)
				e.addInitrdKey(t, host)
				e.addDiskKey(t, host, passphrase+"\n")
			},
			wantErr: "ends with a newline",
		},
		{
			name: "disk key readable by others",
			host: "ganon",
			setup: func(t *testing.T, e *scriptEnv, host string) {
				e.addHostKey(t, host)
				e.addInitrdKey(t, host)
				if err := os.Chmod(e.addDiskKey(t, host, passphrase), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "disk key KEYS/ganon_disk_key has mode 644",
		},
		{
			name: "no initrd key",
			host: "ganon",
			setup: func(t *testing.T, e *scriptEnv, host string) {
				e.addHostKey(t, host)
				e.addDiskKey(t, host, passphrase)
			},
			wantErr: "KEYS/ganon_initrd_ssh_host_ed25519_key not found",
		},
		{
			name: "initrd key is the host key",
			host: "ganon",
			setup: func(t *testing.T, e *scriptEnv, host string) {
				main := e.addHostKey(t, host)
				e.addDiskKey(t, host, passphrase)
				for _, suffix := range []string{"", ".pub"} {
					b, err := os.ReadFile(main + suffix)
					if err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(filepath.Join(e.keys, host+"_initrd_ssh_host_ed25519_key"+suffix), b, 0o600); err != nil {
						t.Fatal(err)
					}
				}
			},
			wantErr: "is the main host key",
		},
		{
			name:        "initrd rejects the passphrase",
			host:        "ganon",
			env:         []string{"STUB_ASKPASS_REJECT=1"},
			wantAnyCall: true,
			wantErr:     "did not accept the disk passphrase",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := tt.host
			if host == "" {
				host = "rk1-node2"
			}
			e := newScriptEnv(t)
			if tt.setup != nil {
				tt.setup(t, e, host)
			} else {
				e.addKeys(t, host)
			}
			res := e.run(t, tt.env, "-n", host, "-d", "192.0.2.12", "-k", e.identity, "-K", e.keys)
			if res.code == 0 {
				t.Fatalf("exit code 0, want failure\nstderr: %s", res.stderr)
			}
			if want := strings.ReplaceAll(tt.wantErr, "KEYS", e.keys); !strings.Contains(res.stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, res.stderr)
			}
			if _, called := e.logFile(t, "anywhere.args"); called != tt.wantAnyCall {
				t.Errorf("nixos-anywhere called = %v, want %v", called, tt.wantAnyCall)
			}
			if _, called := e.logFile(t, "rebuild.args"); called != tt.wantRebuild {
				t.Errorf("nixos-rebuild called = %v, want %v", called, tt.wantRebuild)
			}
			e.assertTmpEmpty(t)
		})
	}
}
