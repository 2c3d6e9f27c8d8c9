package nix_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/internal/nixfleet"
	"github.com/nixdeploy/nixdeploy/internal/testtool"
)

const (
	fleetConfig = "../examples/fleet/nixdeploy.toml"
	// luksRemoteKey is where disko reads ganon's passphrase and where
	// bootstrap-nixos.sh -e uploads it; the two must agree.
	luksRemoteKey = "/tmp/secret.key"
)

// requireTool is the shared internal/testtool helper.
var requireTool = testtool.Require

// nixDir is this directory as an absolute path: the flakes and the script
// resolve every path from it.
func nixDir(t *testing.T) string {
	t.Helper()
	d, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// cleanEnv is the test process's environment without variables that would
// change how nix or the script behave on a developer's machine.
func cleanEnv(drop ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "NIX_") || slices.Contains(drop, name) {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// runNix runs nix-instantiate in nix/. The dummy store and the private state,
// cache and home directories keep it away from /nix and any daemon, so it
// needs no write access there and behaves the same as root, as a user and
// in CI. Nothing here may fetch: there is no network and no nixpkgs.
func runNix(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	bin := requireTool(t, "nix-instantiate")
	tmp := t.TempDir()
	cmd := exec.CommandContext(t.Context(), bin, append([]string{"--store", "dummy://"}, args...)...)
	cmd.Dir = nixDir(t)
	cmd.Env = append(cleanEnv(),
		"NIX_STATE_DIR="+filepath.Join(tmp, "state"),
		"HOME="+tmp,
		"XDG_CACHE_HOME="+filepath.Join(tmp, "cache"),
	)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("nix-instantiate %s: %w\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out, nil
}

// evalJSON evaluates expr strictly and decodes the JSON result into v.
func evalJSON(t *testing.T, expr string, v any) {
	t.Helper()
	out, err := runNix(t, "--eval", "--strict", "--json", "--expr", expr)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("decode %s: %v", out, err)
	}
}

func nixFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".nix") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestTreeLayout pins the plan's directory structure, which the README and
// the bot's config (flake, installer_flake) refer to.
func TestTreeLayout(t *testing.T) {
	for _, p := range []string{
		"flake.nix",
		"nixos-installer/flake.nix",
		"nixos-installer/minimal-configuration.nix",
		"modules/nixos/common.nix",
		"modules/nixos/sops.nix",
		"modules/nixos/host-spec.nix",
		"hosts/fleet.nix",
		"hosts/common/authorized-keys.nix",
		"hosts/common/disks/standard-btrfs.nix",
		"hosts/common/disks/rk1-emmc.nix",
		"hosts/common/rk1-base.nix",
		"hosts/common/rk1-hardware.nix",
		"hosts/nixos/ganon/configuration.nix",
		"hosts/nixos/ganon/hardware-configuration.nix",
		"hosts/nixos/rk1-node1/configuration.nix",
		"hosts/nixos/rk1-node2/configuration.nix",
		"hosts/nixos/rk1-node3/configuration.nix",
		"hosts/nixos/rk1-node4/configuration.nix",
		"scripts/bootstrap-nixos.sh",
		"scripts/helpers.sh",
		"README.md",
	} {
		fi, err := os.Stat(p)
		switch {
		case err != nil:
			t.Errorf("missing %s: %v", p, err)
		case fi.Size() == 0:
			t.Errorf("%s is empty", p)
		}
	}
	fi, err := os.Stat("scripts/bootstrap-nixos.sh")
	if err == nil && fi.Mode().Perm()&0o111 == 0 {
		t.Errorf("scripts/bootstrap-nixos.sh is not executable (mode %v)", fi.Mode())
	}
}

func TestNixFilesParse(t *testing.T) {
	requireTool(t, "nix-instantiate")
	files := nixFiles(t)
	if len(files) < 15 {
		t.Fatalf("found only %d .nix files: %v", len(files), files)
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			if _, err := runNix(t, "--parse", f); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestRK1NodeConfigs(t *testing.T) {
	base := filepath.Join(nixDir(t), "hosts/common/rk1-base.nix")
	var first []byte
	for n := 1; n <= 4; n++ {
		name := fmt.Sprintf("rk1-node%d", n)
		t.Run(name, func(t *testing.T) {
			file := "./hosts/nixos/" + name + "/configuration.nix"
			// The node files are modules; call one with stub arguments in
			// case it ever becomes a function, and read back what it sets.
			expr := `let m = import ` + file + `;` +
				` r = if builtins.isFunction m then m { config = {}; lib = {}; pkgs = {}; } else m;` +
				` in { host = r.networking.hostName; imports = map toString r.imports; }`
			var got struct {
				Host    string   `json:"host"`
				Imports []string `json:"imports"`
			}
			evalJSON(t, expr, &got)
			if got.Host != name {
				t.Errorf("networking.hostName = %q, want %q", got.Host, name)
			}
			if want := []string{base}; !slices.Equal(got.Imports, want) {
				t.Errorf("imports = %q, want %q", got.Imports, want)
			}

			// The plan: identical nodes, only the hostname differs.
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if c := bytes.Count(b, []byte(name)); c != 1 {
				t.Errorf("%s names %s %d times, want once (the hostname)", file, name, c)
			}
			norm := bytes.ReplaceAll(b, []byte(name), []byte("rk1-nodeN"))
			if first == nil {
				first = norm
			} else if !bytes.Equal(norm, first) {
				t.Errorf("%s differs from rk1-node1 beyond the hostname:\n%s\nvs rk1-node1:\n%s", file, norm, first)
			}
		})
	}
}

func loadFleet(t *testing.T) *nixdeploy.Config {
	t.Helper()
	cfg, err := nixdeploy.LoadConfig(fleetConfig)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func hostNames(cfg *nixdeploy.Config, attr func(nixdeploy.Host) string) []string {
	var names []string
	for _, h := range cfg.Hosts {
		names = append(names, attr(h))
	}
	slices.Sort(names)
	return names
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// evalFleet is hosts/fleet.nix, decoded as `nixdeploy check` decodes it.
func evalFleet(t *testing.T) nixfleet.Fleet {
	t.Helper()
	out, err := runNix(t, "--eval", "--strict", "--json", "hosts/fleet.nix")
	if err != nil {
		t.Fatal(err)
	}
	fleet, err := nixfleet.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	return fleet
}

// TestFleetMatchesConfig keeps the bot's view of the fleet
// (examples/fleet/nixdeploy.toml) and the Nix side's (hosts/fleet.nix) in
// step, with the comparison `nixdeploy check` makes: host set, system,
// address, disk, SSH port, disk key path and initrd SSH. A disk mismatch here
// would let the approval show one device while disko wipes another; a port
// mismatch would leave the bot waiting on a port sshd does not serve.
func TestFleetMatchesConfig(t *testing.T) {
	cfg := loadFleet(t)
	fleet := evalFleet(t)
	for _, p := range nixfleet.Compare(cfg, fleet) {
		t.Error(p)
	}
	for _, h := range cfg.Hosts {
		f, ok := fleet[h.Name]
		if !ok {
			continue
		}
		for _, p := range []string{
			"hosts/common/disks/" + f.DiskLayout + ".nix",
			"hosts/" + f.Hardware,
			"hosts/nixos/" + h.Name + "/configuration.nix",
		} {
			if _, err := os.Stat(p); err != nil {
				t.Errorf("%s: fleet.nix entry needs %s: %v", h.Name, p, err)
			}
		}
		if i := f.InitrdSSH; i != nil && len(i.KernelModules) == 0 {
			t.Errorf("%s: initrdSsh.kernelModules is empty: the initrd would have no network", h.Name)
		}
	}
	// The example fleet exercises every field: a LUKS host with an initrd
	// SSH server and hosts without either.
	if g := fleet["ganon"]; g.DiskKeyFile == nil || g.InitrdSSH == nil {
		t.Errorf("ganon: diskKeyFile %v, initrdSsh %v; want both set", g.DiskKeyFile, g.InitrdSSH)
	}
}

func TestScriptsShellcheck(t *testing.T) {
	bin := requireTool(t, "shellcheck")
	for _, f := range []string{"scripts/bootstrap-nixos.sh", "scripts/helpers.sh"} {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), bin, "-x", f)
			cmd.Dir = nixDir(t)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("shellcheck -x %s: %v\n%s", f, err, out)
			}
		})
	}
}

// Stubs for the tools bootstrap-nixos.sh drives. Each records what it was
// given under $STUB_LOG, where the test reads it back.
const (
	stubAnywhere = `#!/usr/bin/env bash
set -euo pipefail
printf '%s\n' "$@" >"$STUB_LOG/anywhere.args"
printf '%s\n' "$SHELL" >"$STUB_LOG/anywhere.shell"
extra='' prev=''
for a in "$@"; do
	[[ $prev != --extra-files ]] || extra=$a
	prev=$a
done
[[ -n $extra ]] || { echo 'stub: no --extra-files' >&2; exit 97; }
printf '%s\n' "$extra" >"$STUB_LOG/extra-files.path"
cd "$extra"
# nixos-anywhere copies this tree to /mnt keeping permissions; sshd refuses
# a host key that is not 0600.
[[ $(stat -c %a etc/ssh/ssh_host_ed25519_key) == 600 ]] || { echo 'stub: host key is not 0600' >&2; exit 98; }
{
	stat -c '%a %n' . etc etc/ssh etc/ssh/ssh_host_ed25519_key etc/ssh/ssh_host_ed25519_key.pub
	find . -mindepth 1 | sort
} >"$STUB_LOG/extra-files.tree"
cp etc/ssh/ssh_host_ed25519_key "$STUB_LOG/host-key.seen"
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
		// Fail on the first unanswered probe instead of retrying.
		"SSH_WAIT_TIMEOUT=0",
	)
	return e
}

// addHostKey creates keys/<host>_ssh_host_ed25519_key(.pub) as
// `nixdeploy keys init` would.
func (e *scriptEnv) addHostKey(t *testing.T, host string) string {
	t.Helper()
	keygen := requireTool(t, "ssh-keygen")
	path := filepath.Join(e.keys, host+"_ssh_host_ed25519_key")
	out, err := exec.CommandContext(t.Context(), keygen, "-q", "-t", "ed25519", "-N", "", "-C", "root@"+host, "-f", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	return path
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
// TMPDIR: the extra-files tree holds a private host key.
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
		if res.code != 0 || !strings.Contains(res.stdout, "usage: bootstrap-nixos.sh") {
			t.Errorf("-h: exit %d, stdout %q", res.code, res.stdout)
		}
	})
}

func TestBootstrapInstall(t *testing.T) {
	dir := nixDir(t)
	tests := []struct {
		name        string
		host        string
		args        []string // ID, KEYS and LUKS are replaced by the sandbox's paths
		wantAnyArgs []string // EXTRA stands for the temp extra-files dir
		wantRebuild []string
		wantPort    string
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
			wantPort: "22",
		},
		{
			name: "ganon with disk passphrase and port",
			host: "ganon",
			args: []string{"-n", "ganon", "-d", "192.0.2.100", "-k", "ID", "-K", "KEYS", "-p", "2222", "-e", "LUKS"},
			wantAnyArgs: []string{"--ssh-port", "2222", "-i", "ID", "--extra-files", "EXTRA",
				"--disk-encryption-keys", luksRemoteKey, "LUKS",
				"--flake", dir + "/nixos-installer#ganon", "root@192.0.2.100"},
			wantRebuild: []string{"switch", "--flake", dir + "#ganon", "--target-host", "root@192.0.2.100"},
			wantPort:    "2222",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newScriptEnv(t)
			hostKey := e.addHostKey(t, tt.host)
			luksFile := filepath.Join(e.base, "ganon.passphrase")
			if err := os.WriteFile(luksFile, []byte("correct horse"), 0o600); err != nil {
				t.Fatal(err)
			}
			subst := strings.NewReplacer("ID", e.identity, "KEYS", e.keys, "LUKS", luksFile)
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

			extra := strings.TrimSpace(e.lines(t, "extra-files.path")[0])
			if filepath.Dir(extra) != e.tmp {
				t.Errorf("extra-files dir %s is not under TMPDIR %s", extra, e.tmp)
			}
			gotAny := e.lines(t, "anywhere.args")
			for i, a := range gotAny {
				if a == extra {
					gotAny[i] = "EXTRA"
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
			wantTree := []string{
				"755 .",
				"755 etc",
				"755 etc/ssh",
				"600 etc/ssh/ssh_host_ed25519_key",
				"644 etc/ssh/ssh_host_ed25519_key.pub",
				"./etc",
				"./etc/ssh",
				"./etc/ssh/ssh_host_ed25519_key",
				"./etc/ssh/ssh_host_ed25519_key.pub",
			}
			if got := e.lines(t, "extra-files.tree"); !slices.Equal(got, wantTree) {
				t.Errorf("extra-files tree:\n got %q\nwant %q", got, wantTree)
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
			for _, want := range []string{"StrictHostKeyChecking=yes", "-i " + e.identity, "-p " + tt.wantPort, "UserKnownHostsFile="} {
				if !strings.Contains(opts, want) {
					t.Errorf("NIX_SSHOPTS %q lacks %q", opts, want)
				}
			}

			// Every ssh after the install pins the pre-generated key.
			pub, err := os.ReadFile(hostKey + ".pub")
			if err != nil {
				t.Fatal(err)
			}
			fields := strings.Fields(string(pub))
			wantKH := fmt.Sprintf("nixdeploy-%s %s %s\n", tt.host, fields[0], fields[1])
			if got, _ := e.logFile(t, "known_hosts.seen"); got != wantKH {
				t.Errorf("known_hosts given to ssh = %q, want %q", got, wantKH)
			}
			calls := e.lines(t, "ssh.calls")
			if len(calls) < 2 || !strings.HasSuffix(calls[0], " root@"+args[3]+" true") || !strings.Contains(calls[len(calls)-1], "systemctl is-system-running") {
				t.Errorf("ssh calls = %q, want a wait for SSH first and a verify last", calls)
			}
			e.assertTmpEmpty(t)
		})
	}
}

func TestBootstrapFailures(t *testing.T) {
	const host = "rk1-node2"
	tests := []struct {
		name        string
		setup       func(t *testing.T, e *scriptEnv)
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
			setup:   func(t *testing.T, e *scriptEnv) {},
			wantErr: "not found",
		},
		{
			name: "public key does not match",
			setup: func(t *testing.T, e *scriptEnv) {
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
			setup: func(t *testing.T, e *scriptEnv) {
				if err := os.Chmod(e.addHostKey(t, host), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "mode 644",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newScriptEnv(t)
			if tt.setup != nil {
				tt.setup(t, e)
			} else {
				e.addHostKey(t, host)
			}
			res := e.run(t, tt.env, "-n", host, "-d", "192.0.2.12", "-k", e.identity, "-K", e.keys, "-b")
			if res.code == 0 {
				t.Fatalf("exit code 0, want failure\nstderr: %s", res.stderr)
			}
			if !strings.Contains(res.stderr, tt.wantErr) {
				t.Errorf("stderr lacks %q:\n%s", tt.wantErr, res.stderr)
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
