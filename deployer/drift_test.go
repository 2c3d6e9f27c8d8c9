package deployer_test

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/deployer"
	"github.com/nixdeploy/nixdeploy/internal/sshlab"
)

func readingOf(t *testing.T, rs []nixdeploy.HostReading, host string) nixdeploy.HostReading {
	t.Helper()
	for _, r := range rs {
		if r.Host == host {
			return r
		}
	}
	t.Fatalf("no reading of %s in %+v", host, rs)
	return nixdeploy.HostReading{}
}

// The board reads each lab target's real links over its pinned sshd and
// compares the running system with what the runner's nix evaluates.
func TestReadHostsDriftAndRebootPending(t *testing.T) {
	e := newEnv(t, envConfig{lab: sshlab.Options{Hosts: []string{"node1", "node2", "node3"}}})
	lab := e.lab
	// node1 runs what the flake says; node2 runs something else; node3
	// runs the flake's system but booted an older one.
	lab.SetExpected("node1", lab.CurrentSystem("node1"))
	lab.SetExpected("node3", lab.CurrentSystem("node3"))
	lab.SetBooted("node3", lab.Dir+"/store/nixos-system-node3-older")

	rs, err := e.d.ReadHosts(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 {
		t.Fatalf("got %d readings, want 3", len(rs))
	}
	n1, n2, n3 := readingOf(t, rs, "node1"), readingOf(t, rs, "node2"), readingOf(t, rs, "node3")
	if n1.Drift != nixdeploy.DriftNo || n1.Running != lab.CurrentSystem("node1") || n1.Expected != n1.Running || n1.RebootPending || n1.Why != "" {
		t.Errorf("node1 = %+v, want no drift, no reboot pending", n1)
	}
	rev := "0123456789abcdef0123456789abcdef01234567" // the stub flake's default revision
	if n2.Drift != nixdeploy.DriftYes || n2.Expected != lab.Dir+"/store/nixos-system-node2-"+rev || n2.Running != lab.CurrentSystem("node2") {
		t.Errorf("node2 = %+v, want drift against the evaluated system", n2)
	}
	if !strings.Contains(n2.Why, "revision 0123456789ab") || n2.Revision != rev {
		t.Errorf("node2 why %q revision %q, want the revision named", n2.Why, n2.Revision)
	}
	if n3.Drift != nixdeploy.DriftNo || !n3.RebootPending || n3.Booted != lab.Dir+"/store/nixos-system-node3-older" {
		t.Errorf("node3 = %+v, want reboot pending without drift", n3)
	}
	for _, r := range rs {
		if r.At.IsZero() {
			t.Errorf("%s has no time of reading", r.Host)
		}
	}
	// One session per host: readlink ran twice on each (current and
	// booted) from one script, and each host logged in once.
	for _, h := range []string{"node1", "node2", "node3"} {
		if n := lab.Target(h).Logins(); n != 1 {
			t.Errorf("%s: %d logins, want 1", h, n)
		}
	}
	if got := len(lab.CallsTo("readlink")); got != 6 {
		t.Errorf("readlink calls = %d, want 6:\n%s", got, strings.Join(lab.Calls(), "\n"))
	}
	evals := func() int {
		n := 0
		for _, c := range lab.CallsTo("nix") {
			if strings.Contains(c, "[eval]") {
				n++
			}
		}
		return n
	}
	if n := evals(); n != 1 {
		t.Errorf("nix eval ran %d times for 3 hosts, want once:\n%s", n, strings.Join(lab.CallsTo("nix"), "\n"))
	}
	for _, c := range lab.CallsTo("") {
		if strings.HasPrefix(c, "BAD ") {
			t.Errorf("a stub refused its call: %s", c)
		}
	}

	// The same revision again: served from the cache, no second eval;
	// the change on node2 shows.
	lab.SetExpected("node2", lab.CurrentSystem("node2"))
	rs, err = e.d.ReadHosts(t.Context(), []string{"node2"})
	if err != nil {
		t.Fatal(err)
	}
	if n := evals(); n != 1 {
		t.Errorf("a second board on the same revision evaluated again (%d evals)", n)
	}
	if rs[0].Drift != nixdeploy.DriftYes {
		t.Errorf("node2 read from the cache = %+v, want the cached expectation (drift)", rs[0])
	}
	// A new revision is evaluated afresh.
	lab.Set("nix.revision", "89abcdef0123456789abcdef0123456789abcdef")
	rs, err = e.d.ReadHosts(t.Context(), []string{"node2"})
	if err != nil {
		t.Fatal(err)
	}
	if n := evals(); n != 2 || rs[0].Drift != nixdeploy.DriftNo {
		t.Errorf("after a new revision: %d evals, node2 = %+v; want 2 evals and no drift", n, rs[0])
	}
}

// A host whose sshd is gone reads as unknown with one clean sentence; the
// others are still read.
func TestReadHostsUnreachable(t *testing.T) {
	e := newEnv(t, envConfig{lab: sshlab.Options{Hosts: []string{"node1", "node2"}}})
	e.lab.SetExpected("node1", e.lab.CurrentSystem("node1"))
	e.lab.Target("node2").Kill()
	rs, err := e.d.ReadHosts(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	n1, n2 := readingOf(t, rs, "node1"), readingOf(t, rs, "node2")
	if n1.Drift != nixdeploy.DriftNo {
		t.Errorf("node1 = %+v, want no drift", n1)
	}
	if n2.Drift != nixdeploy.DriftUnknown || n2.Running != "" {
		t.Fatalf("node2 = %+v, want unknown", n2)
	}
	want := "node2 (" + e.lab.Target("node2").Addr + ") is unreachable: connection refused"
	if n2.Why != want {
		t.Errorf("why = %q, want %q", n2.Why, want)
	}
	if n2.Expected == "" {
		t.Error("the expected system of an unreachable host should still be shown")
	}
}

// A configuration that does not evaluate makes only its host unknown, and
// says so; the others are evaluated one by one.
func TestReadHostsEvalError(t *testing.T) {
	e := newEnv(t, envConfig{lab: sshlab.Options{Hosts: []string{"node1", "node2"}}})
	e.lab.SetExpected("node1", e.lab.CurrentSystem("node1"))
	e.lab.Set("nix.node2.eval-error", "The option `fileSystems.\"/\".device' has conflicting definition values")
	rs, err := e.d.ReadHosts(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	n1, n2 := readingOf(t, rs, "node1"), readingOf(t, rs, "node2")
	if n1.Drift != nixdeploy.DriftNo {
		t.Errorf("node1 = %+v, want no drift despite node2's error", n1)
	}
	if n2.Drift != nixdeploy.DriftUnknown || n2.Why != "nixosConfigurations.node2 does not evaluate at revision 0123456789ab: The option `fileSystems.\"/\".device' has conflicting definition values" || n2.Running == "" {
		t.Errorf("node2 = %+v, want unknown: does not evaluate", n2)
	}
	// A configuration the flake lacks.
	e2 := newEnv(t, envConfig{lab: sshlab.Options{Hosts: []string{"node1"}}})
	e2.lab.Set("nix.node1.missing", "1")
	rs, err = e2.d.ReadHosts(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].Drift != nixdeploy.DriftUnknown || rs[0].Why != "the flake at revision 0123456789ab has no nixosConfigurations.node1" {
		t.Errorf("missing configuration: %+v", rs[0])
	}
}

func TestReadHostsUnknownHost(t *testing.T) {
	e := newEnv(t, envConfig{lab: sshlab.Options{Hosts: []string{"node1"}}})
	if _, err := e.d.ReadHosts(t.Context(), []string{"nope"}); err == nil || !strings.Contains(err.Error(), "not in the fleet config") {
		t.Errorf("err = %v, want unknown host", err)
	}
}

func TestToplevelsApply(t *testing.T) {
	got := deployer.ToplevelsApply([]string{"rk1-node1", "vm.test"})
	want := `cs: builtins.mapAttrs (n: c: c.config.system.build.toplevel.outPath) (builtins.intersectAttrs { "rk1-node1" = null; "vm.test" = null; } cs)`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// Two boards asked for at once share one reading: a host that never
// answers is dialled once, and both get its reason.
func TestReadHostsShareOneReading(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c // held open, silent: no SSH banner ever
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	e := newEnv(t, envConfig{
		lab: sshlab.Options{Hosts: []string{"node1", "node2"}},
		cfg: func(c *nixdeploy.Config) {
			c.Hosts[1].Address, c.Hosts[1].Port = "127.0.0.1", port
		},
		opts: func(o *deployer.Options) { o.ConnectTimeout = 2 * time.Second },
	})
	type result struct {
		rs  []nixdeploy.HostReading
		err error
	}
	first, second := make(chan result, 1), make(chan result, 1)
	go func() {
		rs, err := e.d.ReadHosts(t.Context(), nil)
		first <- result{rs, err}
	}()
	var held net.Conn
	select {
	case held = <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("the first board never dialled node2")
	}
	defer held.Close()
	go func() {
		rs, err := e.d.ReadHosts(t.Context(), nil)
		second <- result{rs, err}
	}()
	a, b := <-first, <-second
	if a.err != nil || b.err != nil {
		t.Fatal(a.err, b.err)
	}
	for _, r := range []result{a, b} {
		n2 := readingOf(t, r.rs, "node2")
		if n2.Drift != nixdeploy.DriftUnknown || n2.Why != "node2 (127.0.0.1:"+strconv.Itoa(port)+") is unreachable: no SSH handshake within 2s" {
			t.Errorf("node2 = %+v", n2)
		}
	}
	select {
	case c := <-accepted:
		c.Close()
		t.Error("the second board dialled node2 again instead of sharing the reading")
	default:
	}
	if n := e.lab.Target("node1").Logins(); n != 1 {
		t.Errorf("node1: %d logins for two boards at once, want 1", n)
	}
}

// A host that presents another key than its pinned one is unknown, and
// the board says so; nothing is sent to it.
func TestReadHostsHostKeyMismatch(t *testing.T) {
	wrong := sshlab.NewPublicKey(t)
	e := newEnv(t, envConfig{lab: sshlab.Options{Hosts: []string{"node1"}}, opts: func(o *deployer.Options) {
		o.HostKeys = wrongKeys{HostKeys: o.HostKeys, host: "node1", key: wrong}
	}})
	lab := e.lab
	rs, err := e.d.ReadHosts(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := "node1 presented a host key other than its pinned one (" + ssh.FingerprintSHA256(lab.Target("node1").HostKey) + "); nothing was sent to it"
	if rs[0].Drift != nixdeploy.DriftUnknown || rs[0].Why != want {
		t.Errorf("reading %+v\nwant why %q", rs[0], want)
	}
	if n := lab.Target("node1").Logins(); n != 0 {
		t.Errorf("%d logins to a host with the wrong key", n)
	}
}
