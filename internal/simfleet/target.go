package simfleet

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nixdeploy/nixdeploy/deployer"
)

// currentSystem is the path the hosts' readlink answers for; the drift
// board's script (deployer.ReadSystemsScript) reads bootedSystem too.
const (
	currentSystem = "/run/current-system"
	bootedSystem  = "/run/booted-system"
)

// nixosRelease is the version in the simulated system paths.
const nixosRelease = "25.05.20250612.1c2a5e8"

// target is one simulated fleet host.
type target struct {
	f    *Fleet
	host Host
	srv  *server
	fail bool

	mu sync.Mutex
	// generations are the host's system generations, oldest first;
	// current indexes the one /run/current-system points to.
	generations []string
	current     int
	// hangNext: the next switch hangs the host after activation; hung:
	// it hangs until PowerReset (hang.go).
	hangNext, hung bool
	// booted is /run/booted-system: what the host last booted (the
	// system it started with, or the one an install rebooted into).
	booted    string
	downUntil time.Time
	// guards are the armed rollback guards by unit (guard.go); failChecks
	// makes every health check unit fail.
	guards     map[string]*simGuard
	failChecks bool
	// tested is the system the last test built, by flake reference: a
	// later boot of the same reference builds the same path.
	tested map[string]string
}

// isUp reports whether the host accepts connections: not while it reboots.
func (t *target) isUp() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return !t.hung && !time.Now().Before(t.downUntil)
}

// reboot drops every connection and refuses new ones for d.
func (t *target) reboot(d time.Duration) {
	t.mu.Lock()
	t.downUntil = time.Now().Add(d)
	t.mu.Unlock()
	t.srv.dropConns()
}

// system is the current system path.
func (t *target) system() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.generations[t.current]
}

// build is the system path of a configuration: ref is a locked flake
// reference with its #attribute, so the same revision always builds the
// same system, as Nix does.
func (t *target) build(ref string) string {
	return storePath(t.host.Name, ref, 1)
}

// links are /run/current-system and /run/booted-system.
func (t *target) links() (current, booted string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.generations[t.current], t.booted
}

// buildFor builds ref for action: a boot after a test of the same ref
// yields the tested system (a guarded switch activates with test, then
// makes the same system the boot default).
func (t *target) buildFor(ref, action string) string {
	t.mu.Lock()
	if p, ok := t.tested[ref]; ok && action == "boot" {
		delete(t.tested, ref)
		t.mu.Unlock()
		return p
	}
	t.mu.Unlock()
	p := t.build(ref)
	if action == "test" {
		t.mu.Lock()
		if t.tested == nil {
			t.tested = map[string]string{}
		}
		t.tested[ref] = p
		t.mu.Unlock()
	}
	return p
}

// activate adds path as the newest generation, unless it is the newest
// already (Nix's createGeneration makes no generation for the same path);
// switch also makes it current, boot only the default for the next boot.
func (t *target) activate(path string, now bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.generations[len(t.generations)-1] != path {
		t.generations = append(t.generations, path)
	}
	if now {
		t.current = len(t.generations) - 1
	}
}

// install replaces every generation by a freshly installed system.
func (t *target) install(path string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.generations = []string{path}
	t.current = 0
	t.booted = path
}

// rollback makes the generation before the current one current.
func (t *target) rollback() (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.current == 0 {
		return "", false
	}
	t.current--
	return t.generations[t.current], true
}

// exec runs a command on the host: the probes and checks of the deployer.
func (t *target) exec(_ context.Context, p *proc) int {
	if code, ok := t.guardExec(p); ok {
		return code
	}
	argv := p.argv
	switch argv[0] {
	case "readlink":
		if len(argv) != 2 || argv[1] != currentSystem {
			fmt.Fprintf(p.stderr, "readlink: %s: not simulated\n", strings.Join(argv[1:], " "))
			return 1
		}
		fmt.Fprintln(p.stdout, t.system())
		return 0
	case "sh":
		// The drift board's one session: deployer.ReadSystemsScript over
		// the two links.
		if len(argv) < 4 || argv[1] != "-c" || argv[2] != deployer.ReadSystemsScript || argv[3] != "sh" {
			fmt.Fprintln(p.stderr, "sh: only nixdeploy's read-systems script is simulated")
			return 2
		}
		cur, booted := t.links()
		for _, l := range argv[4:] {
			v := ""
			switch l {
			case currentSystem:
				v = cur
			case bootedSystem:
				v = booted
			}
			fmt.Fprintf(p.stdout, "%s %s\n", l, v)
		}
		return 0
	case "systemctl":
		switch strings.Join(argv[1:], " ") {
		case "is-system-running", "is-system-running --wait":
			fmt.Fprintln(p.stdout, "running")
			return 0
		case "--failed --no-legend --plain":
			return 0
		}
		fmt.Fprintf(p.stderr, "Unknown command verb '%s'.\n", strings.Join(argv[1:], " "))
		return 1
	}
	return notFound(p, argv[0])
}

// nixBase32 is Nix's alphabet for store path hashes.
const nixBase32 = "0123456789abcdfghijklmnpqrsvwxyz"

// storeHash is a 32-character store hash derived from seed.
func storeHash(seed string) string {
	sum := sha256.Sum256([]byte(seed))
	var b strings.Builder
	for _, c := range sum[:32] {
		b.WriteByte(nixBase32[c%32])
	}
	return b.String()
}

// storePath is a system path of host built from ref, the n-th build.
func storePath(host, ref string, n int) string {
	return fmt.Sprintf("/nix/store/%s-nixos-system-%s-%s", storeHash(fmt.Sprintf("%s|%s|%d", host, ref, n)), host, nixosRelease)
}

// drv is a derivation path named name, for output that looks like Nix's.
func drv(seed, name string) string {
	return "/nix/store/" + storeHash(seed+"|"+name) + "-" + name + ".drv"
}
