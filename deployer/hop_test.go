package deployer_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/deployer"
	"github.com/nixdeploy/nixdeploy/internal/sshlab"
	"github.com/nixdeploy/nixdeploy/runs"
)

// TestRebuildRunnerHop: nixos-rebuild's own ssh (the stub runs real
// OpenSSH from a runner with an empty ~/.ssh, using only NIX_SSHOPTS and
// SSH_AUTH_SOCK) reaches the target only with the pinned known_hosts, the
// port and the forwarded key. Each case sets the hop up as an older plan
// did, or breaks one part; every lab host listens on a port other than 22.
func TestRebuildRunnerHop(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		sshopts func(wrongKH string, port int) string
		noagent bool
		want    string
	}{
		// The old plan: only -p.
		{name: "no pin", sshopts: func(_ string, port int) string { return fmt.Sprintf("-p %d", port) }, want: "Host key verification failed"},
		{name: "wrong pin", sshopts: func(kh string, port int) string {
			return fmt.Sprintf("-o UserKnownHostsFile=%s -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -p %d", kh, port)
		}, want: "Host key verification failed"},
		{name: "no port", sshopts: func(string, int) string {
			return "-o UserKnownHostsFile=@tmp@/known_hosts -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes"
		}, want: "Connection refused"},
		{name: "no agent", noagent: true, want: "Permission denied (publickey"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envConfig{})
			tgt := e.lab.Target("node1")
			if c.sshopts != nil {
				kh := filepath.Join(t.TempDir(), "known_hosts")
				if err := os.WriteFile(kh, []byte(deployer.KnownHostsLine(tgt.Host, tgt.Port, sshlab.NewPublicKey(t))), 0o644); err != nil {
					t.Fatal(err)
				}
				e.lab.Set("nixos-rebuild.sshopts", c.sshopts(kh, tgt.Port))
			}
			if c.noagent {
				e.lab.Set("nixos-rebuild.noagent", "1")
			}
			before := e.lab.CurrentSystem("node1")
			_, _, err := e.run(t.Context(), nixdeploy.ActionSwitch, []string{"node1"})
			if err == nil {
				t.Fatalf("rebuild succeeded with %s", c.name)
			}
			if !strings.Contains(e.sink.text(), c.want) {
				t.Errorf("want %q in the output:\n%s", c.want, e.sink.text())
			}
			if se := asStepError(t, err); se.Step != "nixos-rebuild" {
				t.Errorf("failed at %s", se.Step)
			}
			if e.lab.CurrentSystem("node1") != before {
				t.Error("the system changed although the target was never reached")
			}
		})
	}
}

// TestKnownHostsLine: OpenSSH looks a non-22 port up as [addr]:port.
func TestKnownHostsLine(t *testing.T) {
	pk := sshlab.NewPublicKey(t)
	if got := deployer.KnownHostsLine("10.0.0.1", 22, pk); !strings.HasPrefix(got, "10.0.0.1 ssh-ed25519 ") {
		t.Errorf("port 22: %q", got)
	}
	if got := deployer.KnownHostsLine("10.0.0.1", 2222, pk); !strings.HasPrefix(got, "[10.0.0.1]:2222 ssh-ed25519 ") {
		t.Errorf("port 2222: %q", got)
	}
}

// TestInstallLUKS: a LUKS host's disk key is uploaded 0600 into the run
// directory, handed over with --disk-encryption-keys, arrives at the
// layout's passwordFile, and is gone from the runner afterwards.
func TestInstallLUKS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{cfg: func(c *nixdeploy.Config) { c.Hosts[0].DiskKey = "/tmp/secret.key" }})
	e.lab.SetLUKS("node1", "/tmp/secret.key", "correct horse battery staple")
	dep, _, err := e.run(t.Context(), nixdeploy.ActionInstall, []string{"node1"})
	if err != nil {
		t.Fatalf("install: %v\n%s", err, e.sink.text())
	}
	noBadCalls(t, e.lab)
	calls := e.lab.CallsTo("nixos-anywhere")
	if len(calls) != 1 || !strings.Contains(calls[0], "[--disk-encryption-keys] [/tmp/secret.key] [/tmp/") {
		t.Fatalf("nixos-anywhere calls = %q", calls)
	}
	got, err := os.ReadFile(filepath.Join(e.lab.ScratchRoot("node1"), "tmp/secret.key"))
	if err != nil || string(got) != "correct horse battery staple" {
		t.Errorf("passwordFile on the target = %q, %v", got, err)
	}
	if strings.Contains(e.sink.text(), "correct horse battery staple") {
		t.Error("the disk key reached the log")
	}
	if !strings.Contains(stepNames(e.steps(dep.ID)), "upload-disk-key nixos-anywhere remove-keys") {
		t.Errorf("steps = %s", stepNames(e.steps(dep.ID)))
	}
}

// TestInstallLUKSWithoutKeyFlag: the lab's nixos-anywhere fails as disko's
// luksFormat does when the layout's passwordFile was never provided, after
// the wipe: what the old plan did to ganon.
func TestInstallLUKSWithoutKeyFlag(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{})
	// The config (wrongly) says node1 has no LUKS; the layout has it.
	e.lab.SetLUKS("node1", "/tmp/secret.key", "")
	_, _, err := e.run(t.Context(), nixdeploy.ActionInstall, []string{"node1"})
	if err == nil || !strings.Contains(e.sink.text(), "Nothing to read on input.") || !strings.Contains(e.sink.text(), "sgdisk --zap-all") {
		t.Fatalf("err = %v; output:\n%s", err, e.sink.text())
	}
}

// TestInstallLUKSNoDiskKey: the preflight refuses a LUKS host with no disk
// key before anything runs anywhere.
func TestInstallLUKSNoDiskKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{cfg: func(c *nixdeploy.Config) { c.Hosts[0].DiskKey = "/tmp/secret.key" }})
	_, _, err := e.run(t.Context(), nixdeploy.ActionInstall, []string{"node1"})
	if err == nil || !strings.Contains(err.Error(), "disk key") {
		t.Fatalf("err = %v", err)
	}
	if se := asStepError(t, err); se.Step != "preflight" {
		t.Errorf("failed at %s", se.Step)
	}
	if n := len(e.lab.Calls()); n != 0 {
		t.Errorf("%d stub calls after a failed preflight: %q", n, e.lab.Calls())
	}
}

// TestInstallDiskMismatch: a disko device other than the config's disk
// refuses the install, naming both, before any key is uploaded.
func TestInstallDiskMismatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{})
	e.lab.Set("disko.node1.device", "/dev/sda")
	_, _, err := e.run(t.Context(), nixdeploy.ActionInstall, []string{"node1"})
	if err == nil || !strings.Contains(err.Error(), "/dev/sda") || !strings.Contains(err.Error(), "/dev/vda") {
		t.Fatalf("err = %v", err)
	}
	if len(e.lab.CallsTo("nixos-anywhere")) != 0 {
		t.Error("nixos-anywhere ran")
	}
}

// initrdEnv is a lab whose node1 has LUKS and an initrd SSH server.
func initrdEnv(t *testing.T, opts func(*deployer.Options)) *env {
	t.Helper()
	e := newEnv(t, envConfig{lab: sshlab.Options{Hosts: []string{"node1"}, Initrd: []string{"node1"}}, cfg: func(c *nixdeploy.Config) {
		c.Hosts[0].DiskKey = "/tmp/secret.key"
		c.Hosts[0].InitrdSSH = &nixdeploy.InitrdSSH{HostKeyPath: nixdeploy.DefaultInitrdHostKeyPath}
	}, opts: opts})
	// The initrd's port is known once the lab runs; the deployer reads
	// the config it was given, which this edits in place.
	e.cfg.Hosts[0].InitrdSSH.Port = e.lab.Initrds["node1"].Port
	e.lab.SetLUKS("node1", "/tmp/secret.key", "correct horse battery staple")
	e.lab.Set("initrd.node1.path", nixdeploy.DefaultInitrdHostKeyPath)
	return e
}

// TestUnlock: /nixdeploy unlock-disk sends the passphrase to the initrd
// that presents its pinned key, and never logs it.
func TestUnlock(t *testing.T) {
	t.Parallel()
	e := initrdEnv(t, nil)
	if err := e.d.Unlock(t.Context(), "node1", e.sink); err != nil {
		t.Fatalf("unlock: %v\n%s", err, e.sink.text())
	}
	if got := e.lab.Unlocked("node1"); got != "correct horse battery staple\n" {
		t.Errorf("the initrd read %q", got)
	}
	if strings.Contains(e.sink.text(), "correct horse") {
		t.Error("the passphrase reached the log")
	}
	if err := e.d.Unlock(t.Context(), "node2"); err == nil {
		t.Error("unlocked a host that is not in the config")
	}
}

// TestUnlockRefused: an initrd that asks again (a wrong passphrase) makes
// askPass die with "End of file reached", and the unlock says so instead of
// reporting success.
func TestUnlockRefused(t *testing.T) {
	t.Parallel()
	e := initrdEnv(t, nil)
	e.lab.Set("askpass-reject.node1-initrd", "1") // the initrd sshd runs as LAB_HOST node1-initrd
	err := e.d.Unlock(t.Context(), "node1", e.sink)
	if err == nil || !strings.Contains(err.Error(), "did not accept the disk passphrase") {
		t.Fatalf("err = %v\n%s", err, e.sink.text())
	}
}

// TestUnlockWrongInitrdKey: an initrd port that presents another key gets
// nothing.
func TestUnlockWrongInitrdKey(t *testing.T) {
	t.Parallel()
	wrong := sshlab.NewPublicKey(t)
	e := initrdEnv(t, func(o *deployer.Options) { o.HostKeys = wrongInitrd{o.HostKeys, wrong} })
	err := e.d.Unlock(t.Context(), "node1")
	if !errors.Is(err, deployer.ErrHostKeyMismatch) {
		t.Fatalf("err = %v", err)
	}
	if got := e.lab.Unlocked("node1"); got != "" {
		t.Errorf("an initrd with the wrong key read %q", got)
	}
}

type wrongInitrd struct {
	deployer.HostKeys
	key ssh.PublicKey
}

func (w wrongInitrd) InitrdHostPublicKey(string) (ssh.PublicKey, error) { return w.key, nil }

// TestInstallUnlocksAtBoot: the install uploads the initrd key with its
// mode, and its wait unlocks the initrd by itself, once, before the host
// comes back with its pinned key.
func TestInstallUnlocksAtBoot(t *testing.T) {
	t.Parallel()
	e := initrdEnv(t, nil)
	dep, _, err := e.run(t.Context(), nixdeploy.ActionInstall, []string{"node1"})
	if err != nil {
		t.Fatalf("install: %v\n%s", err, e.sink.text())
	}
	noBadCalls(t, e.lab)
	if got := e.lab.Unlocked("node1"); got != "correct horse battery staple\n" {
		t.Errorf("the initrd read %q, want the passphrase once", got)
	}
	if !strings.Contains(stepNames(e.steps(dep.ID)), "upload-initrd-key upload-disk-key nixos-anywhere") {
		t.Errorf("steps = %s", stepNames(e.steps(dep.ID)))
	}
	key := filepath.Join(e.lab.ScratchRoot("node1"), "mnt", nixdeploy.DefaultInitrdHostKeyPath)
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("initrd key in the installed system: %v %v", fi, err)
	}
	if !strings.Contains(e.sink.text(), "unlocks it over the initrd SSH server") {
		t.Error("the install did not say what happens at boot")
	}
}

// TestResolveAndRunLocked: Resolve asks the runner for the revision and the
// disks; a run given that lock uses it and resolves nothing again, so a
// push between approval and run changes nothing that runs.
func TestResolveAndRunLocked(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{})
	dep := nixdeploy.Deployment{Hosts: []string{"node1"}, Action: nixdeploy.ActionInstall, Requester: "test"}
	lock, err := e.d.Resolve(t.Context(), dep)
	if err != nil {
		t.Fatal(err)
	}
	if lock.Revision != labRev || lock.InstallerRevision != labRev || lock.Devices["node1"]["main"] != "/dev/vda" {
		t.Fatalf("lock = %+v", lock)
	}
	fp1, err := e.d.Fingerprint(nixdeploy.Deployment{Hosts: dep.Hosts, Action: dep.Action, Lock: lock})
	if err != nil {
		t.Fatal(err)
	}
	// A push after the approval: the runner's flake moves on.
	const pushed = "fedcba9876543210fedcba9876543210fedcba98"
	e.lab.Set("nix.revision", pushed)
	moved, err := e.d.Resolve(t.Context(), dep)
	if err != nil {
		t.Fatal(err)
	}
	fp2, _ := e.d.Fingerprint(nixdeploy.Deployment{Hosts: dep.Hosts, Action: dep.Action, Lock: moved})
	if fp1 == fp2 {
		t.Error("the fingerprint does not cover the revision")
	}
	dep.Lock = lock
	if _, err := runs.New(e.db, e.d).Run(t.Context(), &dep, e.sink); err != nil {
		t.Fatalf("install: %v\n%s", err, e.sink.text())
	}
	for _, c := range append(e.lab.CallsTo("nixos-anywhere"), e.lab.CallsTo("nixos-rebuild")...) {
		if !strings.Contains(c, "rev="+labRev) || strings.Contains(c, pushed) {
			t.Errorf("ran something other than the approved revision: %s", c)
		}
	}
	if n := len(e.lab.CallsTo("nix")); n != 6 {
		t.Errorf("nix ran %d times, want 6 (two resolves, none in the run)", n)
	}
	if got := e.stored(dep.ID).Revision; got != labRev {
		t.Errorf("recorded revision %q", got)
	}
}

// TestDiskDeviceMismatchNamesBoth is ParseDisks' refusal.
func TestDiskDeviceMismatchNamesBoth(t *testing.T) {
	h := nixdeploy.Host{Name: "ganon", Disk: "/dev/nvme0n1"}
	if _, err := deployer.ParseDisks(h, []byte(`{"main":"/dev/nvme1n1"}`)); err == nil || !strings.Contains(err.Error(), "main=/dev/nvme1n1") || !strings.Contains(err.Error(), "/dev/nvme0n1") {
		t.Errorf("err = %v", err)
	}
	if _, err := deployer.ParseDisks(h, []byte(`{"main":"/dev/nvme0n1"}`)); err != nil {
		t.Error(err)
	}
}

// TestParseFlakeMetadata: the fields Nix documents, old and new; a flake
// without a commit is refused.
func TestParseFlakeMetadata(t *testing.T) {
	rev := labRev
	for _, c := range []struct{ name, json, wantURL, wantErr string }{
		{"new", `{"revision":"` + rev + `","url":"git+file:///d?rev=` + rev + `"}`, "git+file:///d?rev=" + rev, ""},
		{"old", `{"revision":"` + rev + `","lockedUrl":"github:o/d/` + rev + `"}`, "github:o/d/" + rev, ""},
		{"dirty", `{"dirtyRevision":"` + rev + `-dirty","url":"git+file:///d"}`, "", "no revision"},
		{"not a commit", `{"revision":"main","url":"git+file:///d?rev=main"}`, "", "not a commit hash"},
	} {
		_, url, err := deployer.ParseFlakeMetadata("/d", []byte(c.json))
		switch {
		case c.wantErr == "" && (err != nil || url != c.wantURL):
			t.Errorf("%s: %q, %v", c.name, url, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%s: err = %v", c.name, err)
		}
	}
}

// TestLocalRunnerAgent: with runner = "local" the bot serves its key on
// <tmp>/agent.sock and gives nixos-rebuild SSH_AUTH_SOCK; the stub's real
// ssh logs in to the target with it and nothing else.
func TestLocalRunnerAgent(t *testing.T) {
	e := newEnv(t, envConfig{cfg: func(c *nixdeploy.Config) { c.Runner = nixdeploy.Runner{Address: "local"} }})
	t.Setenv("PATH", e.lab.StubDir+":"+os.Getenv("PATH"))
	t.Setenv("SSH_AUTH_SOCK", "")
	before := e.lab.CurrentSystem("node1")
	if _, _, err := e.run(t.Context(), nixdeploy.ActionSwitch, []string{"node1"}); err != nil {
		t.Fatalf("switch: %v\n%s", err, e.sink.text())
	}
	noBadCalls(t, e.lab)
	if e.lab.CurrentSystem("node1") == before {
		t.Error("the system did not change")
	}
	if n := e.lab.Target("node1").Logins(); n != 2 {
		t.Errorf("%d logins on node1, want the bot's and the runner's ssh", n)
	}
}

// TestBuildOnRemoteForForeignSystem: a host whose system differs from the
// runner's (asked with uname -m) is built on the target; one that matches
// is left to nixos-anywhere's default.
func TestBuildOnRemoteForForeignSystem(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("uname", "-m").Output()
	if err != nil {
		t.Skip("uname:", err)
	}
	native := strings.TrimSpace(string(out)) + "-linux"
	foreign := "aarch64-linux"
	if native == foreign {
		foreign = "x86_64-linux"
	}
	for _, c := range []struct {
		system, want string
	}{{native, "auto"}, {foreign, "remote"}} {
		t.Run(c.system, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envConfig{cfg: func(cfg *nixdeploy.Config) { cfg.Hosts[0].System = c.system }})
			if _, _, err := e.run(t.Context(), nixdeploy.ActionInstall, []string{"node1"}); err != nil {
				t.Fatalf("install: %v\n%s", err, e.sink.text())
			}
			if got := e.lab.Control("nixos-anywhere.node1.build-on"); got != c.want {
				t.Errorf("nixos-anywhere built with --build-on %s, want %s", got, c.want)
			}
		})
	}
}
