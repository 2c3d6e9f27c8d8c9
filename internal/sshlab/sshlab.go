// Package sshlab is a test lab of real parts: OpenSSH sshd processes on
// loopback addresses, one per fleet host plus one for the runner, with stub
// nixos-anywhere, nixos-rebuild, systemctl and readlink scripts on their PATH.
// The stubs check the arguments and files they are given, print realistic
// output, append every invocation to a call log, and obey control files so a
// test can make them fail, hang or print many lines.
//
// Target sshds use the pre-generated host keys of the lab's key directory, so
// a deployer that pins those keys is checked for real. Tests in any package
// may use it; it needs /usr/sbin/sshd and ssh-keygen and skips (or fails with
// CI=true) without them.
package sshlab

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/internal/testtool"
)

// SSHD is the sshd binary the lab runs. sshd re-executes itself, so it must
// be an absolute path.
const SSHD = "/usr/sbin/sshd"

// Require skips the test when sshd or ssh-keygen is missing, or fails it
// when CI=true, where the tools must be installed.
func Require(t testing.TB) {
	t.Helper()
	var missing []string
	if _, err := os.Stat(SSHD); err != nil {
		missing = append(missing, SSHD)
	}
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		missing = append(missing, "ssh-keygen")
	}
	if len(missing) == 0 {
		return
	}
	testtool.Missing(t, "sshlab needs "+strings.Join(missing, " and ")+" (install openssh-server and openssh-client)")
}

// Options shapes a lab.
type Options struct {
	// Hosts names the fleet hosts; each gets its own sshd on 127.0.0.2,
	// 127.0.0.3, … Default: one host, "node1".
	Hosts []string
	// RunnerProxy puts the runner behind a TCP proxy that the test can
	// freeze, which models a peer that stopped answering.
	RunnerProxy bool
	// Jump starts one more sshd to be used as a ProxyJump host.
	Jump bool
	// Initrd names hosts that get an initrd SSH server: one more sshd on
	// the host's address with the host's pre-generated initrd key
	// (<host>_initrd_ssh_host_ed25519_key), whose cryptsetup-askpass stub
	// records the passphrase it reads (see Unlocked).
	Initrd []string
}

// Lab is a running lab. Everything lives under Dir and is removed with the
// test.
type Lab struct {
	t testing.TB

	// Dir is the lab's root directory.
	Dir string
	// StubDir is first on every sshd's PATH and holds the stub scripts.
	StubDir string
	// ControlDir holds the files that steer the stubs (see Set).
	ControlDir string
	// KeysDir is the pre-generated key store:
	// <host>_ssh_host_ed25519_key (0600) and .pub.
	KeysDir string
	// CallLog gets one line per stub invocation.
	CallLog string
	// ConfigPath is the fleet config written by Config.
	ConfigPath string

	// User is the login the lab's sshds accept: the current user.
	User string
	// ClientKeyPath is the bot's private key, authorized on every sshd.
	ClientKeyPath string
	// Client is the same key as a signer.
	Client ssh.Signer

	// Runner is the sshd standing in for the runner; Targets stand in for
	// the fleet hosts, in Options.Hosts order. Jump is nil unless asked for.
	Runner  *Server
	Targets []*Server
	Jump    *Server
	// Initrds are the initrd SSH servers, by host.
	Initrds map[string]*Server
	// Proxy is in front of Runner when Options.RunnerProxy is set.
	Proxy *Proxy

	// Flake and InstallerFlake are the flake URIs written into the config.
	Flake          string
	InstallerFlake string

	readlink string
	ssh      string
}

// Server is one running sshd.
type Server struct {
	Name string
	// Host is the loopback address it listens on, Port its port and Addr
	// both joined.
	Host string
	Port int
	Addr string
	// HostKeyPath is the private host key; HostKey its public half and
	// HostKeyLine that in authorized_keys form.
	HostKeyPath string
	HostKey     ssh.PublicKey
	HostKeyLine string

	lab     *Lab
	cfgPath string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
	mu      sync.Mutex
	killed  bool
}

// New starts a lab: key store, client key, stubs and the sshds. Everything
// is stopped in t.Cleanup.
func New(t testing.TB, opts Options) *Lab {
	t.Helper()
	Require(t)
	if len(opts.Hosts) == 0 {
		opts.Hosts = []string{"node1"}
	}
	if len(opts.Hosts) > 200 {
		t.Fatal("sshlab: too many hosts")
	}
	u, err := user.Current()
	if err != nil {
		t.Fatalf("sshlab: current user: %v", err)
	}
	if os.Geteuid() == 0 {
		// sshd's privilege separation needs this directory when run as root.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatalf("sshlab: %v", err)
		}
	}
	dir := t.TempDir()
	l := &Lab{
		t:              t,
		Dir:            dir,
		StubDir:        filepath.Join(dir, "bin"),
		ControlDir:     filepath.Join(dir, "control"),
		KeysDir:        filepath.Join(dir, "keys"),
		CallLog:        filepath.Join(dir, "calls.log"),
		User:           u.Username,
		Flake:          filepath.Join(dir, "flake"),
		InstallerFlake: filepath.Join(dir, "flake", "installer"),
	}
	for _, d := range []string{l.StubDir, l.ControlDir, l.KeysDir, filepath.Join(dir, "store"), filepath.Join(dir, "systems"), filepath.Join(dir, "booted"), filepath.Join(dir, "sshd"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(l.CallLog, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	l.readlink, err = exec.LookPath("readlink")
	if err != nil {
		t.Fatalf("sshlab: readlink: %v", err)
	}
	if l.ssh, err = exec.LookPath("ssh"); err != nil {
		testtool.Missing(t, "sshlab needs ssh (install openssh-client)")
	}

	l.ClientKeyPath = filepath.Join(dir, "client_ed25519")
	keygen(t, l.ClientKeyPath, "nixdeploy-bot")
	pem, err := os.ReadFile(l.ClientKeyPath)
	if err != nil {
		t.Fatal(err)
	}
	if l.Client, err = ssh.ParsePrivateKey(pem); err != nil {
		t.Fatalf("sshlab: client key: %v", err)
	}
	pub, err := os.ReadFile(l.ClientKeyPath + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	l.writeStubs()

	l.Runner = l.start("runner", "127.0.0.1", l.serverKey("runner"))
	if opts.RunnerProxy {
		l.Proxy = NewProxy(t, l.Runner.Addr)
	}
	if opts.Jump {
		l.Jump = l.start("jump", "127.0.0.1", l.serverKey("jump"))
	}
	for i, h := range opts.Hosts {
		if !nixdeploy.ValidName(h) {
			t.Fatalf("sshlab: bad host name %q", h)
		}
		keyPath := filepath.Join(l.KeysDir, h+"_ssh_host_ed25519_key")
		keygen(t, keyPath, "root@"+h)
		l.initSystem(h)
		l.Targets = append(l.Targets, l.start(h, "127.0.0."+strconv.Itoa(i+2), keyPath))
	}
	l.Initrds = map[string]*Server{}
	for _, h := range opts.Initrd {
		tgt := l.Target(h)
		keyPath := filepath.Join(l.KeysDir, h+"_initrd_ssh_host_ed25519_key")
		keygen(t, keyPath, "root@"+h+"-initrd")
		l.Initrds[h] = l.start(h+"-initrd", tgt.Host, keyPath)
	}
	return l
}

// serverKey generates a throwaway host key for a non-fleet sshd.
func (l *Lab) serverKey(name string) string {
	p := filepath.Join(l.Dir, "sshd", name+"_host_ed25519_key")
	keygen(l.t, p, name)
	return p
}

func keygen(t testing.TB, path, comment string) {
	t.Helper()
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path).CombinedOutput()
	if err != nil {
		t.Fatalf("sshlab: ssh-keygen: %v: %s", err, out)
	}
}

// initSystem gives host a first /run/current-system.
func (l *Lab) initSystem(host string) {
	sys := filepath.Join(l.Dir, "store", "nixos-system-"+host+"-initial")
	l.mkSystem(host, sys)
	if err := os.Symlink(sys, l.systemLink(host)); err != nil {
		l.t.Fatal(err)
	}
	// It booted what it runs, until a switch changes the running system.
	if err := os.Symlink(sys, l.bootedLink(host)); err != nil {
		l.t.Fatal(err)
	}
}

func (l *Lab) systemLink(host string) string { return filepath.Join(l.Dir, "systems", host) }
func (l *Lab) bootedLink(host string) string { return filepath.Join(l.Dir, "booted", host) }

// BootedSystem is what the stubbed `readlink /run/booted-system` prints on
// host ("" when the link is missing).
func (l *Lab) BootedSystem(host string) string {
	p, _ := os.Readlink(l.bootedLink(host))
	return p
}

// SetBooted points host's /run/booted-system at path, as a reboot into
// that system would; "" removes the link.
func (l *Lab) SetBooted(host, path string) {
	link := l.bootedLink(host)
	if err := os.Remove(link); err != nil && !os.IsNotExist(err) {
		l.t.Fatal(err)
	}
	if path == "" {
		return
	}
	if err := os.Symlink(path, link); err != nil {
		l.t.Fatal(err)
	}
}

// SetExpected makes the stub nix evaluate host's system (its
// config.system.build.toplevel) to path.
func (l *Lab) SetExpected(host, path string) { l.Set("nix."+host+".toplevel", path) }

// CurrentSystem is what the stubbed `readlink /run/current-system` prints on
// host.
func (l *Lab) CurrentSystem(host string) string {
	p, err := os.Readlink(l.systemLink(host))
	if err != nil {
		l.t.Fatalf("sshlab: %v", err)
	}
	return p
}

// Target returns the server of host.
func (l *Lab) Target(host string) *Server {
	for _, s := range l.Targets {
		if s.Name == host {
			return s
		}
	}
	l.t.Fatalf("sshlab: no target %q", host)
	return nil
}

// RunnerAddr is the runner's user@host:port as the config names it: through
// the proxy when there is one.
func (l *Lab) RunnerAddr() string {
	if l.Proxy != nil {
		return l.User + "@" + l.Proxy.Addr
	}
	return l.User + "@" + l.Runner.Addr
}

// The sessions' environment is the lab's alone. SHLVL=1 keeps bash (when
// it is the user's login shell) from reading ~/.bashrc, which it otherwise
// does for every command sshd runs: a user's rc file could put its own
// directories before the stubs on PATH, and one that starts, say, pyenv
// costs a tenth of a second of CPU per session, which benchmarks would
// count.
const sshdConfig = `# sshd_config written by internal/sshlab
Port %d
ListenAddress %s
HostKey %s
AuthorizedKeysFile %s
PidFile %s
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowTcpForwarding yes
AllowAgentForwarding yes
PermitUserEnvironment no
AcceptEnv LANG
MaxSessions 50
MaxStartups 100
LoginGraceTime 30
LogLevel VERBOSE
SetEnv PATH=%s:/usr/local/bin:/usr/bin:/bin LAB_HOST=%s SHLVL=1 HOME=%s TMPDIR=%s
`

// start runs an sshd for name on host with hostKey, retrying when another
// process grabbed the free port first.
func (l *Lab) start(name, host, hostKey string) *Server {
	l.t.Helper()
	pubText, err := os.ReadFile(hostKey + ".pub")
	if err != nil {
		l.t.Fatal(err)
	}
	pk, _, _, _, err := ssh.ParseAuthorizedKey(pubText)
	if err != nil {
		l.t.Fatalf("sshlab: %s: %v", hostKey, err)
	}
	var lastErr error
	for range 5 {
		s := &Server{
			Name: name, Host: host, HostKeyPath: hostKey, HostKey: pk,
			HostKeyLine: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk))),
			lab:         l,
			cfgPath:     filepath.Join(l.Dir, "sshd", name+".conf"),
			logPath:     filepath.Join(l.Dir, "sshd", name+".log"),
		}
		s.Port = freePort(l.t, host)
		s.Addr = net.JoinHostPort(host, strconv.Itoa(s.Port))
		if lastErr = s.run(); lastErr == nil {
			l.t.Cleanup(s.Kill)
			return s
		}
	}
	l.t.Fatalf("sshlab: start sshd %s: %v", name, lastErr)
	return nil
}

func freePort(t testing.TB, host string) int {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("sshlab: listen on %s: %v", host, err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func (s *Server) writeConfig() error {
	l := s.lab
	keys := filepath.Join(l.Dir, "authorized_keys")
	if _, err := os.Lstat(l.systemLink(s.Name)); err == nil {
		// A fleet target takes its authorized keys from the system it
		// runs, so an activation can lock the bot out and a rollback
		// let it in again.
		keys = filepath.Join(l.systemLink(s.Name), "authorized_keys")
	}
	cfg := fmt.Sprintf(sshdConfig, s.Port, s.Host, s.HostKeyPath,
		keys, filepath.Join(l.Dir, "sshd", s.Name+".pid"),
		l.StubDir, s.Name, filepath.Join(l.Dir, "home"), l.TmpDir())
	return os.WriteFile(s.cfgPath, []byte(cfg), 0o644)
}

// TmpDir is the TMPDIR of the lab's sessions: the runner's run
// directories (mktemp -d) are made in it, so a test sees its own alone.
func (l *Lab) TmpDir() string { return filepath.Join(l.Dir, "tmp") }

func (s *Server) run() error {
	if err := s.writeConfig(); err != nil {
		return err
	}
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(SSHD, "-D", "-e", "-f", s.cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func() {
		cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitReady(10 * time.Second); err != nil {
		s.Kill()
		return fmt.Errorf("%w; sshd log:\n%s", err, s.Log())
	}
	return nil
}

// waitReady polls until sshd answers with its banner.
func (s *Server) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		select {
		case <-s.exited:
			return errors.New("sshd exited during start")
		default:
		}
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			line, rerr := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if rerr == nil && strings.HasPrefix(line, "SSH-2.0-") {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sshd on %s not ready after %s", s.Addr, limit)
		}
		// Back off on the exit channel rather than sleeping blind.
		select {
		case <-s.exited:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Kill stops the sshd and every process it started (connection handlers
// and the commands they run, which sit in sessions of their own), with
// SIGKILL, as a crashed or powered-off machine would.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.killed {
		return
	}
	s.killed = true
	pid := s.cmd.Process.Pid
	// Stop the listener first so it forks no new handler, then the tree.
	syscall.Kill(pid, syscall.SIGSTOP)
	for _, p := range descendants(pid) {
		syscall.Kill(p, syscall.SIGKILL)
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	syscall.Kill(pid, syscall.SIGKILL)
	<-s.exited
}

// LogPath is the file sshd logs to, for a process other than the test's
// (a benchmark driving a lab it did not start) to read.
func (s *Server) LogPath() string { return s.logPath }

// Log returns what sshd logged so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

// Logins counts the successful public-key logins sshd logged: zero proves
// that no command could have been sent.
func (s *Server) Logins() int { return strings.Count(s.Log(), "Accepted publickey for ") }

// descendants lists every process below pid, children before their own
// children, by walking /proc.
func descendants(pid int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The command name may hold spaces and parentheses; fields after
		// the last ')' are fixed: state, ppid, …
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		children[pp] = append(children[pp], p)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// Set writes a control file that steers the stubs. Names are
// "<tool>.<knob>" for every host or "<tool>.<host>.<knob>" for one:
//
//	nixos-anywhere|nixos-rebuild: exit (status), hang (any), lines (count),
//	  print (text printed to stdout), print-stderr, cat (a file to print),
//	  sleep (seconds to take before any of that),
//	  nochange (rebuild: do not change the current system), breakssh
//	  (the new system refuses the bot's key), dropped (nixos-rebuild's
//	  ssh dies right after the activation: exit 255)
//	nixos-rebuild: sshopts (replaces NIX_SSHOPTS, "-" unsets it, @tmp@
//	  stands for the run directory), noagent (unset SSH_AUTH_SOCK): the
//	  runner's hop as an older plan set it up
//	nix: revision (what flake metadata reports); nix.<host>.toplevel,
//	  nix.<host>.eval-error, nix.<host>.missing (the systems eval)
//	disko.<host>.device, disko.<host>.luks (passwordFile), initrd.<host>.path
//	systemctl: state (running, degraded, …), failed (units, one a line),
//	  unit.<unit> (what is-active prints for it; default active)
func (l *Lab) Set(name, value string) {
	if err := os.WriteFile(filepath.Join(l.ControlDir, name), []byte(value), 0o644); err != nil {
		l.t.Fatal(err)
	}
}

// PIDFile is where a hanging stub writes its pid (and ChildPIDFile its
// child's): tool is nixos-anywhere or nixos-rebuild, host the flake attr.
func (l *Lab) PIDFile(tool, host string) string {
	return filepath.Join(l.ControlDir, tool+"."+host+".pid")
}

// ChildPIDFile is the pid file of the hanging stub's child process.
func (l *Lab) ChildPIDFile(tool, host string) string {
	return filepath.Join(l.ControlDir, tool+"."+host+".childpid")
}

// ExtraFilesDir returns the --extra-files directory nixos-anywhere received
// for host, or "" when it was not called.
func (l *Lab) ExtraFilesDir(host string) string {
	b, err := os.ReadFile(filepath.Join(l.ControlDir, "nixos-anywhere."+host+".extra-files"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Calls returns the call log: one line per stub invocation, formatted
// "<tool> <where> [arg1] [arg2] …" where <where> is the sshd's name (runner
// or a host). A line starting with "BAD " is a stub that rejected its input.
func (l *Lab) Calls() []string {
	b, err := os.ReadFile(l.CallLog)
	if err != nil {
		l.t.Fatal(err)
	}
	s := strings.TrimRight(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// CallsTo returns the calls of one tool (and the BAD lines of it).
func (l *Lab) CallsTo(tool string) []string {
	var out []string
	for _, c := range l.Calls() {
		if strings.HasPrefix(c, tool+" ") || strings.HasPrefix(c, "BAD "+tool+" ") {
			out = append(out, c)
		}
	}
	return out
}

// WaitFile polls until path exists and is non-empty and returns its
// trimmed content, failing the test after limit.
func (l *Lab) WaitFile(ctx context.Context, path string, limit time.Duration) string {
	l.t.Helper()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(path); err == nil && len(bytes.TrimSpace(b)) > 0 {
			return strings.TrimSpace(string(b))
		}
		select {
		case <-ctx.Done():
			l.t.Fatalf("sshlab: waiting for %s: %v", path, ctx.Err())
		case <-deadline.C:
			l.t.Fatalf("sshlab: %s did not appear within %s", path, limit)
		case <-tick.C:
		}
	}
}

// Alive reports whether process pid exists and has not exited: a zombie
// (exited, not yet reaped by its parent or init, which on some machines
// takes over a second) is not alive.
func Alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...: the state follows the last ')'.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z'
	}
	return true
}

// ConfigText is a fleet config for the lab: the runner over SSH with its
// pinned key, each target on its loopback address, and the key store.
// extra is appended verbatim (more TOML).
func (l *Lab) ConfigText(extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "flake = %q\ninstaller_flake = %q\n\n", l.Flake, l.InstallerFlake)
	fmt.Fprintf(&b, "[runner]\naddress = %q\nhost_key = %q\n\n", l.RunnerAddr(), l.Runner.HostKeyLine)
	if l.Jump != nil {
		fmt.Fprintf(&b, "[runner.jump]\naddress = %q\nhost_key = %q\n\n", l.User+"@"+l.Jump.Addr, l.Jump.HostKeyLine)
	}
	fmt.Fprintf(&b, "[keys]\ndir = %q\n\n", l.KeysDir)
	for _, s := range l.Targets {
		fmt.Fprintf(&b, "[[hosts]]\nname = %q\naddress = %q\nport = %d\nsystem = \"x86_64-linux\"\ndisk = \"/dev/vda\"\ntags = [\"lab\"]\n\n", s.Name, s.Host, s.Port)
	}
	b.WriteString(extra)
	return b.String()
}

// Config writes ConfigText(extra) to ConfigPath and loads it through the
// real config loader.
func (l *Lab) Config(extra string) *nixdeploy.Config {
	l.t.Helper()
	l.ConfigPath = filepath.Join(l.Dir, "nixdeploy.toml")
	if err := os.WriteFile(l.ConfigPath, []byte(l.ConfigText(extra)), 0o644); err != nil {
		l.t.Fatal(err)
	}
	cfg, err := nixdeploy.LoadConfig(l.ConfigPath)
	if err != nil {
		l.t.Fatalf("sshlab: lab config: %v", err)
	}
	return cfg
}

// Keys reads the lab's key store; it has the methods the deployer's
// HostKeys interface wants.
type Keys struct{ Dir string }

// HostKeys returns the lab's key store.
func (l *Lab) HostKeys() Keys { return Keys{Dir: l.KeysDir} }

// HostPublicKey reads <host>_ssh_host_ed25519_key.pub.
func (k Keys) HostPublicKey(host string) (ssh.PublicKey, error) {
	b, err := os.ReadFile(filepath.Join(k.Dir, host+"_ssh_host_ed25519_key.pub"))
	if err != nil {
		return nil, err
	}
	pk, _, _, _, err := ssh.ParseAuthorizedKey(b)
	return pk, err
}

// HostPrivateKey reads <host>_ssh_host_ed25519_key.
func (k Keys) HostPrivateKey(host string) ([]byte, error) {
	return os.ReadFile(filepath.Join(k.Dir, host+"_ssh_host_ed25519_key"))
}

// DiskKey reads <host>_disk_key.
func (k Keys) DiskKey(host string) ([]byte, error) {
	return os.ReadFile(filepath.Join(k.Dir, host+"_disk_key"))
}

// InitrdHostPrivateKey reads <host>_initrd_ssh_host_ed25519_key.
func (k Keys) InitrdHostPrivateKey(host string) ([]byte, error) {
	return os.ReadFile(filepath.Join(k.Dir, host+"_initrd_ssh_host_ed25519_key"))
}

// InitrdHostPublicKey reads <host>_initrd_ssh_host_ed25519_key.pub.
func (k Keys) InitrdHostPublicKey(host string) (ssh.PublicKey, error) {
	b, err := os.ReadFile(filepath.Join(k.Dir, host+"_initrd_ssh_host_ed25519_key.pub"))
	if err != nil {
		return nil, err
	}
	pk, _, _, _, err := ssh.ParseAuthorizedKey(b)
	return pk, err
}

// SetLUKS makes host's disk layout use LUKS with passwordFile, as
// nix/hosts/common/disks/*.nix does, and puts pass into the key store as
// its disk key (unless pass is empty).
func (l *Lab) SetLUKS(host, passwordFile, pass string) {
	l.Set("disko."+host+".luks", passwordFile)
	if pass != "" {
		if err := os.WriteFile(filepath.Join(l.KeysDir, host+"_disk_key"), []byte(pass), 0o600); err != nil {
			l.t.Fatal(err)
		}
	}
}

// Unlocked is what host's initrd cryptsetup-askpass stub read, one
// passphrase a line ("" when it never ran).
func (l *Lab) Unlocked(host string) string {
	b, _ := os.ReadFile(filepath.Join(l.ControlDir, "unlocked."+host+"-initrd"))
	return string(b)
}

// ScratchRoot is where the stub nixos-anywhere played host's install:
// uploaded disk keys at their remote paths, extra files under mnt/.
func (l *Lab) ScratchRoot(host string) string { return filepath.Join(l.ControlDir, "root."+host) }

// Control reads a control file a stub wrote ("" when absent).
func (l *Lab) Control(name string) string {
	b, err := os.ReadFile(filepath.Join(l.ControlDir, name))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// NewPublicKey returns a fresh ed25519 public key, for tests that need a key
// nobody holds (a wrong pin).
func NewPublicKey(t testing.TB) ssh.PublicKey {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pk
}
