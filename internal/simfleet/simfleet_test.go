package simfleet_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/db"
	"github.com/nixdeploy/nixdeploy/deployer"
	"github.com/nixdeploy/nixdeploy/internal/simfleet"
	"github.com/nixdeploy/nixdeploy/internal/sshlab"
	"github.com/nixdeploy/nixdeploy/runs"
)

func newKey(t *testing.T) (ssh.Signer, []byte) {
	t.Helper()
	s, pemBytes, err := sshlab.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return s, pemBytes
}

// rig is a simulated fleet of ganon, rk1-node1 and rk1-node2 (broken),
// with a real deployer and database in front of it.
type rig struct {
	fleet  *simfleet.Fleet
	life   *runs.Lifecycle
	dep    *deployer.Deployer
	db     *db.DB
	client ssh.Signer
	cfg    *nixdeploy.Config
}

func newRig(t *testing.T, pace time.Duration) *rig {
	t.Helper()
	// DiskKey is a fixed passphrase: simfleet checks that one arrives.
	keys := sshlab.MemKeys{Private: map[string][]byte{}, DiskKeys: func(host string) []byte {
		return []byte("correct horse battery staple " + host)
	}}
	var hosts []simfleet.Host
	for _, h := range []struct{ name, system, disk string }{
		{"ganon", "x86_64-linux", "/dev/nvme0n1"},
		{"rk1-node1", "aarch64-linux", "/dev/mmcblk0"},
		{"rk1-node2", "aarch64-linux", "/dev/mmcblk0"},
	} {
		s, pemBytes := newKey(t)
		keys.Private[h.name] = pemBytes
		hosts = append(hosts, simfleet.Host{Name: h.name, System: h.system, Disk: h.disk, HostKey: s})
	}
	client, _ := newKey(t)
	fleet, err := simfleet.Start(simfleet.Options{Hosts: hosts, ClientKey: client.PublicKey(), Pace: pace, FailRebuild: []string{"rk1-node2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fleet.Close)

	r := fleet.Runner()
	var b strings.Builder
	fmt.Fprintf(&b, "flake = \"/dots\"\ninstaller_flake = \"/dots/installer\"\n[runner]\naddress = \"%s@%s\"\nhost_key = %q\n",
		fleet.RunnerUser(), r.Addr(), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(r.HostKey))))
	for _, h := range hosts {
		e, _ := fleet.Host(h.Name)
		fmt.Fprintf(&b, "[[hosts]]\nname = %q\naddress = %q\nport = %d\nsystem = %q\ndisk = %q\nbuild_on_target = %v\n",
			h.Name, e.IP, e.Port, h.System, h.Disk, h.System == "aarch64-linux")
		if h.System == "x86_64-linux" {
			b.WriteString("disk_key = \"/tmp/secret.key\"\n")
		}
	}
	cfg, err := nixdeploy.ParseConfig(filepath.Join(t.TempDir(), "nixdeploy.toml"), []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	store, _, err := db.Open(t.Context(), filepath.Join(t.TempDir(), "nixdeploy.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	d, err := deployer.New(deployer.Options{
		Config: cfg, Store: store, HostKeys: keys, ClientKey: client,
		WaitBackoff: 10 * time.Millisecond, KillGrace: 500 * time.Millisecond, ConnectTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &rig{fleet: fleet, dep: d, life: runs.New(store, d), db: store, client: client, cfg: cfg}
}

// lines collects a deployment's output.
type lines struct{ text []string }

func (l *lines) Line(x nixdeploy.LogLine) { l.text = append(l.text, x.Text) }

func (l *lines) has(s string) bool {
	return slices.ContainsFunc(l.text, func(t string) bool { return strings.Contains(t, s) })
}

// TestDeployerAgainstTheFleet drives the real deployer, unchanged, through
// a switch, an install and a failing rebuild: the simulator understands
// every command it sends, and the hosts' systems change as they should.
func TestDeployerAgainstTheFleet(t *testing.T) {
	r := newRig(t, 0)

	before := r.fleet.CurrentSystem("rk1-node1")
	out := &lines{}
	dep := &nixdeploy.Deployment{Hosts: []string{"rk1-node1"}, Action: nixdeploy.ActionSwitch, Requester: "test"}
	if _, err := r.life.Run(t.Context(), dep, out); err != nil {
		t.Fatalf("switch: %v\n%s", err, strings.Join(out.text, "\n"))
	}
	after := r.fleet.CurrentSystem("rk1-node1")
	if after == before || !strings.Contains(after, "-nixos-system-rk1-node1-") || !out.has("rk1-node1 is running "+after) {
		t.Errorf("switch: system %s → %s; output:\n%s", before, after, strings.Join(out.text, "\n"))
	}

	// Without --disk-encryption-keys the LUKS layout fails after the
	// wipe, as disko's luksFormat does: what the bot once did to ganon.
	out = &lines{}
	r.cfg.Hosts[0].DiskKey = ""
	dep = &nixdeploy.Deployment{Hosts: []string{"ganon"}, Action: nixdeploy.ActionInstall, Requester: "test"}
	if _, err := r.life.Run(t.Context(), dep, out); err == nil || !out.has("Nothing to read on input.") {
		t.Fatalf("install without a disk key: %v\n%s", err, strings.Join(out.text, "\n"))
	}
	r.cfg.Hosts[0].DiskKey = "/tmp/secret.key"

	out = &lines{}
	dep = &nixdeploy.Deployment{Hosts: []string{"ganon"}, Action: nixdeploy.ActionInstall, Requester: "test"}
	if _, err := r.life.Run(t.Context(), dep, out); err != nil {
		t.Fatalf("install: %v\n%s", err, strings.Join(out.text, "\n"))
	}
	for _, want := range []string{"### Formatting hard drive with disko ###", "+ cryptsetup -q luksFormat", "Found Windows Boot Manager", "### Done! ###", "ganon is up and presents its pinned host key"} {
		if !out.has(want) {
			t.Errorf("install output lacks %q", want)
		}
	}
	checkDiskoMatchesNix(t, out.text)
	calls := strings.Join(r.fleet.Calls(), "\n")
	for _, want := range []string{"runner: exec sh -c", "mktemp -d", "--extra-files /tmp/tmp.", "rm -rf -- /tmp/tmp.", "ganon: exec sh -c"} {
		if !strings.Contains(calls, want) {
			t.Errorf("calls lack %q:\n%s", want, calls)
		}
	}

	out = &lines{}
	dep = &nixdeploy.Deployment{Hosts: []string{"rk1-node2"}, Action: nixdeploy.ActionSwitch, Requester: "test"}
	rep, err := r.life.Run(t.Context(), dep, out)
	var se *deployer.StepError
	if !errors.As(err, &se) || se.Step != "nixos-rebuild" || se.ExitCode != 1 || rep.State != nixdeploy.StateFailed {
		t.Fatalf("broken host: %v, %+v", err, rep)
	}
	if !out.has("has conflicting definition values") {
		t.Errorf("the evaluation error is not in the output:\n%s", strings.Join(out.text, "\n"))
	}
	// The files the error names are the nix tree's own.
	named := regexp.MustCompile(`-source/(nix/[^' ]+\.nix)`)
	var seen int
	for _, l := range out.text {
		for _, m := range named.FindAllStringSubmatch(l, -1) {
			seen++
			if _, err := os.Stat(filepath.Join("..", "..", m[1])); err != nil {
				t.Errorf("the simulated error names %s, which nix/ does not have", m[1])
			}
		}
	}
	if seen == 0 {
		t.Error("the simulated error names no file of nix/")
	}
}

// checkDiskoMatchesNix: the simulated disko output follows
// nix/hosts/common/disks/standard-btrfs.nix: its ESP size, its LUKS name,
// its passwordFile and every btrfs subvolume (@swap included).
func checkDiskoMatchesNix(t *testing.T, out []string) {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "..", "nix", "hosts", "common", "disks", "standard-btrfs.nix"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(out, "\n")
	esp := regexp.MustCompile(`(?s)ESP = \{\s*size = "([^"]+)"`).FindSubmatch(src)
	name := regexp.MustCompile(`type = "luks";\s*name = "([^"]+)"`).FindSubmatch(src)
	pw := regexp.MustCompile(`passwordFile = "([^"]+)"`).FindSubmatch(src)
	if esp == nil || name == nil || pw == nil {
		t.Fatal("standard-btrfs.nix changed shape; update this test")
	}
	for _, want := range []string{
		"--new=1:0:+" + string(esp[1]) + " ",
		"/dev/mapper/" + string(name[1]),
		"--key-file " + string(pw[1]),
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the simulated disko output lacks %q (from nix/)", want)
		}
	}
	subs := regexp.MustCompile(`"(@[a-z]+)" = \{`).FindAllSubmatch(src, -1)
	if len(subs) < 4 {
		t.Fatalf("found %d subvolumes in standard-btrfs.nix", len(subs))
	}
	for _, m := range subs {
		if !strings.Contains(text, "Create subvolume '/mnt/"+string(m[1])+"'") {
			t.Errorf("the simulated disko output lacks subvolume %s", m[1])
		}
	}
}

// TestShutdownInterrupts: a deployment stopped with nixdeploy.ErrShutdown
// as the cause ends interrupted, in the report and the database, and its
// nixos-rebuild, supervised on the runner, is detached rather than killed
// (issue 14): neither the kill script nor the supervisor's cancel is sent.
func TestShutdownInterrupts(t *testing.T) {
	r := newRig(t, time.Hour)
	ctx, cancel := context.WithCancelCause(t.Context())
	started := make(chan struct{})
	var once bool
	sink := deployer.SinkFunc(func(l nixdeploy.LogLine) {
		if !once && l.Text == "building the system configuration..." {
			once = true
			close(started)
		}
	})
	type result struct {
		rep *deployer.Report
		err error
	}
	done := make(chan result, 1)
	dep := &nixdeploy.Deployment{Hosts: []string{"rk1-node1"}, Action: nixdeploy.ActionSwitch, Requester: "test"}
	go func() {
		rep, err := r.life.Run(ctx, dep, sink)
		done <- result{rep, err}
	}()
	select {
	case <-started:
	case res := <-done:
		t.Fatalf("ended before nixos-rebuild ran: %v", res.err)
	}
	cancel(nixdeploy.ErrShutdown)
	res := <-done
	if res.rep == nil || res.rep.State != nixdeploy.StateInterrupted || !errors.Is(res.err, nixdeploy.ErrShutdown) || !errors.Is(res.err, deployer.ErrDetached) {
		t.Fatalf("report %+v, err %v", res.rep, res.err)
	}
	got, err := r.db.Deployment(t.Context(), dep.ID)
	if err != nil || got.State != nixdeploy.StateInterrupted {
		t.Errorf("stored deployment: %+v, %v", got, err)
	}
	if slices.ContainsFunc(r.fleet.Calls(), func(c string) bool {
		return strings.HasPrefix(c, "runner: sh -c pg=$1") || strings.Contains(c, "nixdeploy-supervisor cancel")
	}) {
		t.Errorf("a shutdown killed the step:\n%s", strings.Join(r.fleet.Calls(), "\n"))
	}
	if !slices.ContainsFunc(r.fleet.Calls(), func(c string) bool { return strings.Contains(c, "nixdeploy-supervisor start") }) {
		t.Errorf("nixos-rebuild did not run under the supervisor:\n%s", strings.Join(r.fleet.Calls(), "\n"))
	}
}

// TestOnlyKnownCommands: the servers run the deployer's commands and
// nothing else; they need the client key and, for the runner, its user.
func TestOnlyKnownCommands(t *testing.T) {
	r := newRig(t, 0)
	run := func(user, addr, cmd string) (string, error) {
		c, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{
			User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(r.client)},
			HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second,
		})
		if err != nil {
			return "", err
		}
		defer c.Close()
		s, err := c.NewSession()
		if err != nil {
			return "", err
		}
		defer s.Close()
		out, err := s.CombinedOutput(cmd)
		return string(out), err
	}
	wrap := `exec sh -c 'echo "nixdeploy-pgid $$" >&2; exec "$@"' sh `
	ganon, _ := r.fleet.Host("ganon")
	for _, tc := range []struct {
		name, user, addr, cmd string
		code                  int
		out                   string
	}{
		{"readlink", "root", ganon.Addr(), wrap + "readlink /run/current-system", 0, "-nixos-system-ganon-"},
		{"systemctl", "root", ganon.Addr(), wrap + "systemctl is-system-running --wait", 0, "running"},
		{"unknown on a host", "root", ganon.Addr(), wrap + "cat /etc/shadow", 127, "cat: not found"},
		{"unwrapped", "root", ganon.Addr(), "readlink /run/current-system", 127, "not found"},
		{"shell syntax", "builder", r.fleet.Runner().Addr(), "true; rm -rf /", 2, "not supported"},
		{"unknown on the runner", "builder", r.fleet.Runner().Addr(), wrap + "curl evil", 127, "curl: not found"},
		{"another script", "builder", r.fleet.Runner().Addr(), wrap + "sh -c 'id' sh", 2, "only nixdeploy's upload script"},
		// The runner's own ssh to a target: without the pinned
		// known_hosts it fails, as real OpenSSH with an empty ~/.ssh does.
		{"rebuild without a pin", "builder", r.fleet.Runner().Addr(),
			wrap + fmt.Sprintf("env 'NIX_SSHOPTS=-p %d' nixos-rebuild switch --flake /dots#ganon --target-host root@%s", ganon.Port, ganon.IP), 1, "Host key verification failed."},
		{"rebuild with an unknown flag", "builder", r.fleet.Runner().Addr(),
			wrap + "nixos-rebuild switch --flake /dots#ganon --target-host root@" + ganon.IP + " --yolo", 2, "unrecognized arguments: --yolo"},
		{"nixos-anywhere with two hosts", "builder", r.fleet.Runner().Addr(),
			wrap + "nixos-anywhere --no-such-flag --flake /dots#ganon root@" + ganon.IP, 1, "Usage: nixos-anywhere"},
		{"nix flake show", "builder", r.fleet.Runner().Addr(), wrap + "nix flake show /dots", 1, "is not a recognised command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(tc.user, tc.addr, tc.cmd)
			code := 0
			var ee *ssh.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitStatus()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || !strings.Contains(out, tc.out) {
				t.Errorf("exit %d, output %q; want %d and %q", code, out, tc.code, tc.out)
			}
		})
	}
	if _, err := run("root", r.fleet.Runner().Addr(), "true"); err == nil {
		t.Error("the runner let root in")
	}
}
