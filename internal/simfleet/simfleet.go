// Package simfleet simulates the remote side of a fleet, for the demo and
// for tests that need no OpenSSH: the runner and every host are in-process
// SSH servers (golang.org/x/crypto/ssh) on loopback. The hosts present
// their pinned, pre-generated host keys; the runner a key of its own.
//
// No shell runs anywhere. A session's command line is split into words
// and dispatched to Go handlers that understand exactly what nixdeploy's
// deployer sends (the process-group wrapper, mktemp, the key upload, rm,
// nixos-anywhere, nixos-rebuild, readlink, systemctl and the kill script);
// anything else exits 127, as a shell that cannot find it would.
// nixos-anywhere and nixos-rebuild print realistic output and take
// realistic steps: an install reboots the host, which refuses connections
// for a while, and a switch changes its /run/current-system.
package simfleet

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixdeploy/nixdeploy/deployer"
)

// Host is one simulated fleet host.
type Host struct {
	Name string
	// System is x86_64-linux or aarch64-linux; Disk the device an install
	// formats.
	System string
	Disk   string
	// HostKey is the host's pinned, pre-generated key.
	HostKey ssh.Signer
}

// Options shape a Fleet. Hosts and ClientKey are required.
type Options struct {
	Hosts []Host
	// ClientKey is the only key the servers let in.
	ClientKey ssh.PublicKey
	// RunnerUser is the login the runner accepts (default "builder");
	// hosts accept root.
	RunnerUser string
	// Pace is the unit of simulated time: a build step takes a few Paces,
	// an install a few dozen, a reboot three. Zero runs everything at once.
	Pace time.Duration
	// FailRebuild names hosts whose nixos-rebuild fails to evaluate.
	FailRebuild []string
	// HangAfterSwitch names hosts that hang right after their next
	// switch's activation, until PowerReset (hang.go); OnHang, if set,
	// hears when one does.
	HangAfterSwitch []string
	OnHang          func(host string)
	// FailChecks names hosts whose health check units are failed.
	FailChecks []string
	// Logger gets one debug line per command; default: discard.
	Logger *slog.Logger
}

// Endpoint is where a simulated machine listens.
type Endpoint struct {
	// IP and Port of its SSH server.
	IP   string
	Port int
	// HostKey is the key it presents.
	HostKey ssh.PublicKey
}

// Addr is IP:Port.
func (e Endpoint) Addr() string { return net.JoinHostPort(e.IP, strconv.Itoa(e.Port)) }

// Fleet is a running simulated fleet.
type Fleet struct {
	opts   Options
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	runner    *server
	runnerKey ssh.Signer
	targets   []*target

	mu    sync.Mutex
	calls []string
	// files is the runner's file system: what the key uploads wrote into
	// the temp dirs mktemp made.
	dirs  map[string]bool
	files map[string]file
}

type file struct {
	data []byte
	mode uint64
}

// Start starts the runner and one server per host. Hosts listen on
// 127.0.0.2, 127.0.0.3, …, which Linux routes to loopback; where those
// addresses are not configured (macOS) every host listens on 127.0.0.1 on
// a port of its own. The runner listens on 127.0.0.1.
func Start(o Options) (*Fleet, error) {
	if len(o.Hosts) == 0 || o.ClientKey == nil {
		return nil, errors.New("simfleet: Hosts and ClientKey are required")
	}
	if o.RunnerUser == "" {
		o.RunnerUser = "builder"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	rk, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	f := &Fleet{opts: o, runnerKey: rk, dirs: map[string]bool{}, files: map[string]file{}}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("simfleet: runner: %w", err)
	}
	f.runner = f.newServer("runner", ln, rk, o.RunnerUser, f.runnerExec)
	lns, err := listenHosts(len(o.Hosts))
	if err != nil {
		f.Close()
		return nil, err
	}
	for i, h := range o.Hosts {
		t := &target{f: f, host: h, fail: slices.Contains(o.FailRebuild, h.Name), hangNext: slices.Contains(o.HangAfterSwitch, h.Name),
			failChecks: slices.Contains(o.FailChecks, h.Name)}
		t.generations = []string{storePath(h.Name, "previous", 0)}
		t.booted = t.generations[0]
		t.srv = f.newServer(h.Name, lns[i], h.HostKey, "root", t.exec)
		t.srv.accept = t.isUp
		f.targets = append(f.targets, t)
	}
	f.runner.serve()
	for _, t := range f.targets {
		t.srv.serve()
	}
	return f, nil
}

// listenHosts opens one loopback listener per host, on 127.0.0.2 and up,
// or all on 127.0.0.1 when the first of those cannot be bound.
func listenHosts(n int) ([]net.Listener, error) {
	var out []net.Listener
	closeAll := func() {
		for _, l := range out {
			l.Close()
		}
	}
	for i := range n {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.%d:0", i+2))
		if err != nil {
			closeAll()
			out = nil
			break
		}
		out = append(out, ln)
	}
	for len(out) < n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("simfleet: listen on loopback: %w", err)
		}
		out = append(out, ln)
	}
	return out, nil
}

// Close stops every server and every simulated process.
func (f *Fleet) Close() {
	f.cancel()
	if f.runner != nil {
		f.runner.close()
	}
	for _, t := range f.targets {
		t.srv.close()
		t.stopGuards()
	}
	f.wg.Wait()
}

// Runner is the runner's endpoint.
func (f *Fleet) Runner() Endpoint { return f.runner.endpoint() }

// RunnerUser is the login the runner accepts.
func (f *Fleet) RunnerUser() string { return f.opts.RunnerUser }

// Host is the endpoint of the named host.
func (f *Fleet) Host(name string) (Endpoint, bool) {
	t := f.target(name)
	if t == nil {
		return Endpoint{}, false
	}
	return t.srv.endpoint(), true
}

// CurrentSystem is the named host's /run/current-system.
func (f *Fleet) CurrentSystem(name string) string {
	t := f.target(name)
	if t == nil {
		return ""
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.generations[t.current]
}

// BootedSystem is the named host's /run/booted-system.
func (f *Fleet) BootedSystem(name string) string {
	t := f.target(name)
	if t == nil {
		return ""
	}
	_, b := t.links()
	return b
}

// ExpectedSystem is what the simulated flake, locked as flake (the URL
// its metadata prints), evaluates the named host's system to.
func (f *Fleet) ExpectedSystem(flake, name string) string {
	t := f.target(name)
	if t == nil {
		return ""
	}
	return t.build(flake + "#" + name)
}

// Calls lists every command line the servers were asked to run, as
// "machine: word word …", in order.
func (f *Fleet) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *Fleet) record(machine string, words []string) {
	f.opts.Logger.Debug("simulated command", "machine", machine, "argv", words)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, machine+": "+strings.Join(words, " "))
}

func (f *Fleet) target(name string) *target {
	for _, t := range f.targets {
		if t.host.Name == name {
			return t
		}
	}
	return nil
}

// targetAt finds the host listening on ip:port.
func (f *Fleet) targetAt(ip string, port int) *target {
	for _, t := range f.targets {
		if e := t.srv.endpoint(); e.IP == ip && e.Port == port {
			return t
		}
	}
	return nil
}

// pause waits units × Pace, or until ctx ends.
func (f *Fleet) pause(ctx context.Context, units float64) error {
	d := time.Duration(units * float64(f.opts.Pace))
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// server is one simulated machine's SSH server.
type server struct {
	f    *Fleet
	name string
	ln   net.Listener
	cfg  *ssh.ServerConfig
	key  ssh.PublicKey
	exec func(ctx context.Context, p *proc) int
	// accept, when set, decides whether a new connection is served; a
	// rebooting host drops it.
	accept func() bool

	mu     sync.Mutex
	conns  map[*ssh.ServerConn]bool
	procs  map[int]*proc
	nextPG int
	// steps are the supervised steps running, by run dir and name.
	steps map[string]int
}

// proc is one simulated process: a command a session runs.
type proc struct {
	argv   []string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	cancel context.CancelFunc
	done   chan struct{}
	// agent: the connection forwards an SSH agent, which the runner's own
	// ssh to the targets needs (its ~/.ssh holds no key).
	agent bool
}

func (f *Fleet) newServer(name string, ln net.Listener, key ssh.Signer, user string, exec func(context.Context, *proc) int) *server {
	s := &server{f: f, name: name, ln: ln, key: key.PublicKey(), exec: exec,
		conns: map[*ssh.ServerConn]bool{}, procs: map[int]*proc{}, nextPG: 4000, steps: map[string]int{}}
	want := f.opts.ClientKey.Marshal()
	s.cfg = &ssh.ServerConfig{
		ServerVersion: "SSH-2.0-OpenSSH_9.9",
		PublicKeyCallback: func(c ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if c.User() != user || string(k.Marshal()) != string(want) {
				return nil, fmt.Errorf("%s: permission denied for %s", name, c.User())
			}
			return nil, nil
		},
	}
	s.cfg.AddHostKey(key)
	return s
}

func (s *server) endpoint() Endpoint {
	a := s.ln.Addr().(*net.TCPAddr)
	return Endpoint{IP: a.IP.String(), Port: a.Port, HostKey: s.key}
}

func (s *server) serve() {
	s.f.wg.Go(func() {
		for {
			conn, err := s.ln.Accept()
			if err != nil {
				return
			}
			if s.accept != nil && !s.accept() {
				conn.Close()
				continue
			}
			s.f.wg.Go(func() { s.handleConn(conn) })
		}
	})
}

func (s *server) close() {
	s.ln.Close()
	s.dropConns()
}

// dropConns closes every connection, as a reboot or a power cut does.
func (s *server) dropConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
}

func (s *server) handleConn(conn net.Conn) {
	sc, chans, reqs, err := ssh.NewServerConn(conn, s.cfg)
	if err != nil {
		conn.Close()
		return
	}
	s.mu.Lock()
	s.conns[sc] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, sc)
		s.mu.Unlock()
		sc.Close()
	}()
	// Keepalives get their (negative) reply here.
	go ssh.DiscardRequests(reqs)
	agent := new(atomic.Bool)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "only sessions are simulated")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		s.f.wg.Go(func() { s.session(ch, creqs, agent) })
	}
}

// session serves one session: one exec request, whose command runs until
// it ends or a signal request (or the kill script) stops it.
func (s *server) session(ch ssh.Channel, reqs <-chan *ssh.Request, agent *atomic.Bool) {
	var p *proc
	for req := range reqs {
		switch req.Type {
		case "exec":
			var payload struct{ Command string }
			if p != nil || ssh.Unmarshal(req.Payload, &payload) != nil {
				req.Reply(false, nil)
				continue
			}
			req.Reply(true, nil)
			p = s.start(ch, payload.Command, agent.Load())
		case "auth-agent-req@openssh.com":
			// Granted once per connection, as OpenSSH's sshd does
			// (session.c, session_auth_agent_req); later sessions share
			// the forwarded agent.
			req.Reply(agent.CompareAndSwap(false, true), nil)
		case "env":
			req.Reply(true, nil)
		case "signal":
			if p != nil {
				p.cancel()
			}
			req.Reply(true, nil)
		default:
			// No pty, shell or subsystem: nixdeploy needs none.
			req.Reply(false, nil)
		}
	}
	if p != nil {
		p.cancel()
	}
}

func (s *server) start(ch ssh.Channel, line string, agent bool) *proc {
	ctx, cancel := context.WithCancel(s.f.ctx)
	p := &proc{stdin: ch, stdout: quiet{ch}, stderr: quiet{ch.Stderr()}, cancel: cancel, done: make(chan struct{}), agent: agent}
	s.f.wg.Go(func() {
		defer cancel()
		code := s.run(ctx, p, line)
		close(p.done)
		ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(code)}))
		ch.Close()
	})
	return p
}

// quiet drops write errors: a client that went away is no reason for the
// simulated command to fail differently.
type quiet struct{ w io.Writer }

func (q quiet) Write(b []byte) (int, error) {
	q.w.Write(b)
	return len(b), nil
}

// run interprets a command line: the deployer's wrapper around a command,
// which reports a process group and runs the command; or its kill script.
func (s *server) run(ctx context.Context, p *proc, line string) int {
	if script, ok := deployer.DecodeRemote(line); ok {
		line = script
	}
	words, err := splitWords(line)
	if err != nil {
		fmt.Fprintf(p.stderr, "sh: 1: %v\n", err)
		return 2
	}
	s.f.record(s.name, words)
	switch {
	case len(words) > 5 && words[0] == "exec" && words[1] == "sh" && words[2] == "-c" && words[3] == deployer.WrapScript:
		p.argv = words[5:]
		pg := s.register(p)
		defer s.unregister(pg)
		fmt.Fprintf(p.stderr, "nixdeploy-pgid %d\n", pg)
		code := s.exec(ctx, p)
		if ctx.Err() != nil {
			return 128 + 15 // SIGTERM
		}
		return code
	case len(words) == 6 && words[0] == "sh" && words[1] == "-c" && words[2] == deployer.KillScript:
		return s.kill(p, words[4], words[5])
	case len(words) >= 8 && words[0] == "exec" && words[1] == "sh" && words[2] == "-c" && words[3] == deployer.SupervisorScript:
		return s.supervise(ctx, p, words[5], words[6]+"/"+words[7], words[8:])
	}
	return notFound(p, words[0])
}

func notFound(p *proc, name string) int {
	fmt.Fprintf(p.stderr, "sh: 1: %s: not found\n", name)
	return 127
}

func (s *server) register(p *proc) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextPG++
	s.procs[s.nextPG] = p
	return s.nextPG
}

func (s *server) unregister(pg int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.procs, pg)
}

// kill is the kill script: TERM the group, wait up to 2n tenths of a
// second for it to go, and say "gone" or "alive".
func (s *server) kill(p *proc, pgArg, nArg string) int {
	pg, err1 := strconv.Atoi(pgArg)
	n, err2 := strconv.Atoi(nArg)
	if err1 != nil || err2 != nil {
		fmt.Fprintln(p.stderr, "sh: 1: kill: illegal number")
		return 2
	}
	s.mu.Lock()
	victim := s.procs[pg]
	s.mu.Unlock()
	if victim == nil {
		fmt.Fprintln(p.stdout, "gone")
		return 0
	}
	victim.cancel()
	t := time.NewTimer(time.Duration(2*n) * 100 * time.Millisecond)
	defer t.Stop()
	select {
	case <-victim.done:
		fmt.Fprintln(p.stdout, "gone")
		return 0
	case <-t.C:
		fmt.Fprintln(p.stdout, "alive")
		return 1
	}
}

// supervise plays the deployer's supervisor (deployer.SupervisorScript)
// within the session: the simulated runner keeps no files, so start runs
// the step in the session, as if followed from byte 0 to its end; cancel
// stops it; follow and probe find nothing, as after a reboot of the runner.
func (s *server) supervise(ctx context.Context, p *proc, mode, step string, args []string) int {
	switch {
	case mode == "start" && len(args) > 3:
		p.argv = args[3:]
		pg := s.register(p)
		s.mu.Lock()
		s.steps[step] = pg
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			delete(s.steps, step)
			s.mu.Unlock()
			s.unregister(pg)
		}()
		fmt.Fprintf(p.stderr, "nixdeploy-pgid %d\n", pg)
		code := s.exec(ctx, p)
		if ctx.Err() != nil {
			return 128 + 15 // SIGTERM
		}
		return code
	case mode == "cancel" && len(args) == 1:
		s.mu.Lock()
		pg, ok := s.steps[step]
		s.mu.Unlock()
		if !ok {
			fmt.Fprintln(p.stdout, "gone")
			return 0
		}
		return s.kill(p, strconv.Itoa(pg), args[0])
	case mode == "probe":
		fmt.Fprintln(p.stdout, "gone")
		return 0
	case mode == "follow":
		fmt.Fprintf(p.stderr, "nixdeploy-supervisor: 1: cannot open %s.pid: No such file\n", step)
		return 125
	}
	fmt.Fprintf(p.stderr, "nixdeploy-supervisor: unknown mode %s\n", mode)
	return 125
}
