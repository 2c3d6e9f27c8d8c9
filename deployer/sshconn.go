package deployer

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/nixdeploy/nixdeploy"
)

// Sentinel errors of the SSH layer, for errors.Is.
var (
	// ErrHostKeyMismatch: a server presented a key other than its pinned
	// one. Nothing was sent to it.
	ErrHostKeyMismatch = nixdeploy.ErrHostKeyMismatch
	// ErrConnectionLost: an SSH connection died while a step used it.
	ErrConnectionLost = nixdeploy.ErrConnectionLost
	// ErrAuth: the server refused the bot's SSH key.
	ErrAuth = nixdeploy.ErrAuth
)

// HostKeyError is a host-key mismatch. It names the host and both
// fingerprints; the handshake was aborted before anything was sent.
type HostKeyError struct {
	// Host is the fleet host's name, "runner" or "jump host".
	Host string
	Addr string
	// Want holds the pinned fingerprints (SHA256:…), Got the presented one.
	Want []string
	Got  string
}

func (e *HostKeyError) Error() string {
	want := "no pinned key"
	if len(e.Want) > 0 {
		want = strings.Join(e.Want, " or ")
	}
	return fmt.Sprintf("host key mismatch for %s (%s): expected %s, got %s; refusing to connect", e.Host, e.Addr, want, e.Got)
}

// Is makes errors.Is(err, ErrHostKeyMismatch) work.
func (e *HostKeyError) Is(target error) bool { return target == ErrHostKeyMismatch }

// hostKeyCheck verifies a server's key and restricts the negotiated
// algorithms to the pinned key's type, so a server that has several host
// keys presents the one that is pinned.
type hostKeyCheck struct {
	callback   ssh.HostKeyCallback
	algorithms []string
}

func algorithmsFor(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{keyType}
}

// pinnedKey accepts exactly want.
func pinnedKey(host string, want ssh.PublicKey) hostKeyCheck {
	wantFP := ssh.FingerprintSHA256(want)
	return hostKeyCheck{
		algorithms: algorithmsFor(want.Type()),
		callback: func(_ string, remote net.Addr, key ssh.PublicKey) error {
			if bytes.Equal(key.Marshal(), want.Marshal()) {
				return nil
			}
			return &HostKeyError{Host: host, Addr: addrString(remote), Want: []string{wantFP}, Got: ssh.FingerprintSHA256(key)}
		},
	}
}

func addrString(a net.Addr) string {
	if a == nil {
		return "?"
	}
	return a.String()
}

// configuredKey pins a runner or jump host: an authorized_keys line when
// given, else the entries of a known_hosts file for addr.
func configuredKey(host, line, knownHostsFile, addr string) (hostKeyCheck, error) {
	if strings.TrimSpace(line) != "" {
		pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			return hostKeyCheck{}, fmt.Errorf("%s host_key is not an authorized_keys line: %w", host, err)
		}
		return pinnedKey(host, pk), nil
	}
	if knownHostsFile == "" {
		return hostKeyCheck{}, fmt.Errorf("%s has no pinned host key: set host_key or known_hosts", host)
	}
	cb, err := knownhosts.New(knownHostsFile)
	if err != nil {
		return hostKeyCheck{}, fmt.Errorf("read known_hosts for %s: %w", host, err)
	}
	want, err := knownKeys(cb, addr)
	if err != nil {
		return hostKeyCheck{}, err
	}
	if len(want) == 0 {
		return hostKeyCheck{}, fmt.Errorf("%s (%s) is not in %s", host, addr, knownHostsFile)
	}
	var algos, fps []string
	for _, k := range want {
		fps = append(fps, ssh.FingerprintSHA256(k.Key))
		for _, a := range algorithmsFor(k.Key.Type()) {
			if !strings.Contains(strings.Join(algos, ","), a) {
				algos = append(algos, a)
			}
		}
	}
	return hostKeyCheck{
		algorithms: algos,
		callback: func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			err := cb(hostname, remote, key)
			var ke *knownhosts.KeyError
			if errors.As(err, &ke) {
				return &HostKeyError{Host: host, Addr: addrString(remote), Want: fps, Got: ssh.FingerprintSHA256(key)}
			}
			if err != nil {
				return fmt.Errorf("check host key of %s: %w", host, err)
			}
			return nil
		},
	}, nil
}

// probeKey is a key no server holds. Asking a known_hosts callback about it
// returns a KeyError that lists the keys known for the address.
var probeKey = func() ssh.PublicKey {
	pk, err := ssh.NewPublicKey(ed25519.PublicKey(make([]byte, ed25519.PublicKeySize)))
	if err != nil {
		panic(err)
	}
	return pk
}()

func knownKeys(cb ssh.HostKeyCallback, addr string) ([]knownhosts.KnownKey, error) {
	tcp, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		tcp = &net.TCPAddr{}
	}
	err = cb(addr, tcp, probeKey)
	var ke *knownhosts.KeyError
	if errors.As(err, &ke) {
		return ke.Want, nil
	}
	if err == nil {
		return nil, errors.New("known_hosts accepts an all-zero key; refusing to use it")
	}
	return nil, err
}

// endpoint is one SSH server: the runner, a jump host or a fleet host.
type endpoint struct {
	name string
	user string
	addr string
	key  hostKeyCheck
}

// dialer opens SSH connections with pinned keys, a connect timeout,
// keepalives and an optional jump host.
type dialer struct {
	signer        ssh.Signer
	timeout       time.Duration
	keepalive     time.Duration
	keepaliveMax  int
	jump          *endpoint
	log           *slog.Logger
	clientVersion string

	mu         sync.Mutex
	jumpClient *client
}

// client is a live SSH connection.
type client struct {
	*ssh.Client
	name string
	done chan struct{}

	mu   sync.Mutex
	lost error

	agentOnce sync.Once
	agentErr  error
	agentReq  bool // under mu
}

// requestAgent asks for agent forwarding on the connection's first session
// that needs it. OpenSSH's sshd grants it once per connection
// (session.c, session_auth_agent_req) and gives every later session the
// same SSH_AUTH_SOCK.
func (c *client) requestAgent(sess *ssh.Session) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.agentReq {
		return nil
	}
	if err := agent.RequestAgentForwarding(sess); err != nil {
		return err
	}
	c.agentReq = true
	return nil
}

// forwardAgent answers the server's agent channels with keyring; the
// handler is registered once per connection.
func (c *client) forwardAgent(keyring agent.Agent) error {
	c.agentOnce.Do(func() { c.agentErr = agent.ForwardToAgent(c.Client, keyring) })
	return c.agentErr
}

func (c *client) alive() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// lostErr says why the connection ended, when it ended.
func (c *client) lostErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lost != nil {
		return c.lost
	}
	return fmt.Errorf("%w: connection to %s closed", ErrConnectionLost, c.name)
}

func (c *client) kill(err error) {
	c.mu.Lock()
	if c.lost == nil {
		c.lost = err
	}
	c.mu.Unlock()
	c.Client.Close()
}

// dial connects to ep, through the jump host when one is configured.
func (d *dialer) dial(ctx context.Context, ep endpoint) (*client, error) {
	var conn net.Conn
	var err error
	if d.jump != nil {
		j, jerr := d.jumpHost(ctx)
		if jerr != nil {
			return nil, jerr
		}
		dctx, cancel := context.WithTimeout(ctx, d.timeout)
		conn, err = j.DialContext(dctx, "tcp", ep.addr)
		cancel()
		if err != nil {
			if !j.alive() {
				return nil, fmt.Errorf("connect to %s through the jump host: %w", ep.name, j.lostErr())
			}
			return nil, fmt.Errorf("connect to %s (%s) through the jump host: %w", ep.name, ep.addr, err)
		}
	} else {
		nd := net.Dialer{Timeout: d.timeout, KeepAlive: -1}
		conn, err = nd.DialContext(ctx, "tcp", ep.addr)
		if err != nil {
			return nil, fmt.Errorf("connect to %s (%s): %w", ep.name, ep.addr, err)
		}
	}
	return d.handshake(ctx, conn, ep)
}

// handshake runs the SSH handshake on conn within the connect timeout.
// Channel-backed conns (through a jump host) have no deadlines, so the
// timeout closes the conn instead.
func (d *dialer) handshake(ctx context.Context, conn net.Conn, ep endpoint) (*client, error) {
	cfg := &ssh.ClientConfig{
		User:              ep.user,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(d.signer)},
		HostKeyCallback:   ep.key.callback,
		HostKeyAlgorithms: ep.key.algorithms,
		ClientVersion:     d.clientVersion,
		Timeout:           d.timeout,
	}
	timer := time.AfterFunc(d.timeout, func() { conn.Close() })
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	c, chans, reqs, err := ssh.NewClientConn(conn, ep.addr, cfg)
	timedOut := !timer.Stop()
	cancelled := !stop()
	if err == nil && (timedOut || cancelled) {
		// The handshake finished as the conn was being closed under it.
		c.Close()
		err = errors.New("handshake interrupted")
	}
	if err != nil {
		conn.Close()
		var hk *HostKeyError
		switch {
		case errors.As(err, &hk):
			return nil, hk
		case ctx.Err() != nil:
			return nil, fmt.Errorf("connect to %s: %w", ep.name, ctx.Err())
		case strings.Contains(err.Error(), "unable to authenticate"):
			return nil, fmt.Errorf("%w: %s (%s) refused the bot's key for user %s", ErrAuth, ep.name, ep.addr, ep.user)
		}
		if timedOut {
			return nil, fmt.Errorf("connect to %s (%s): no SSH handshake within %s", ep.name, ep.addr, d.timeout)
		}
		return nil, fmt.Errorf("connect to %s (%s): %w", ep.name, ep.addr, err)
	}
	cl := &client{Client: ssh.NewClient(c, chans, reqs), name: ep.name, done: make(chan struct{})}
	go func() {
		cl.Client.Wait()
		close(cl.done)
	}()
	if d.keepalive > 0 {
		go d.keepaliveLoop(cl)
	}
	return cl, nil
}

// keepaliveLoop sends keepalive@openssh.com every interval. A request
// unanswered for keepaliveMax intervals means the peer is gone, however
// quiet its TCP connection is: the connection is closed, which ends every
// session on it, and lostErr says why.
func (d *dialer) keepaliveLoop(c *client) {
	t := time.NewTicker(d.keepalive)
	defer t.Stop()
	replies := make(chan error, 1)
	inflight, missed := false, 0
	for {
		select {
		case <-c.done:
			return
		case err := <-replies:
			inflight, missed = false, 0
			if err != nil {
				return
			}
		case <-t.C:
			if inflight {
				missed++
				if missed >= d.keepaliveMax {
					err := fmt.Errorf("%w: %s stopped answering (no reply to keepalives for %s)",
						ErrConnectionLost, c.name, time.Duration(missed)*d.keepalive)
					d.log.Warn("ssh peer unresponsive", "host", c.name, "missed", missed)
					c.kill(err)
					return
				}
				continue
			}
			inflight = true
			go func() {
				// OpenSSH answers this unknown request with a failure,
				// which is a reply all the same.
				_, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
				replies <- err
			}()
		}
	}
}

// jumpHost returns the connection to the jump host, dialing it once.
func (d *dialer) jumpHost(ctx context.Context) (*client, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.jumpClient != nil && d.jumpClient.alive() {
		return d.jumpClient, nil
	}
	nd := net.Dialer{Timeout: d.timeout, KeepAlive: -1}
	conn, err := nd.DialContext(ctx, "tcp", d.jump.addr)
	if err != nil {
		return nil, fmt.Errorf("connect to jump host (%s): %w", d.jump.addr, err)
	}
	c, err := d.handshake(ctx, conn, *d.jump)
	if err != nil {
		return nil, err
	}
	d.jumpClient = c
	return c, nil
}

func (d *dialer) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.jumpClient != nil {
		d.jumpClient.Close()
		d.jumpClient = nil
	}
}

// ParseClientKey parses the bot's SSH private key (OpenSSH or PEM format,
// unencrypted). The error never quotes the key.
func ParseClientKey(pem []byte) (ssh.Signer, error) {
	s, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		var pp *ssh.PassphraseMissingError
		if errors.As(err, &pp) {
			return nil, errors.New("the bot's SSH key is encrypted with a passphrase; give it an unencrypted key")
		}
		return nil, errors.New("the bot's SSH key is not a valid private key")
	}
	return s, nil
}

// ClientKeyEnv names the environment variable that holds the text of the
// bot's SSH private key.
const ClientKeyEnv = "NIXDEPLOY_SSH_KEY"

// LoadClientKey reads the bot's SSH key from path, or from $NIXDEPLOY_SSH_KEY
// when path is empty.
func LoadClientKey(path string) (ssh.Signer, error) {
	if path == "" {
		text := os.Getenv(ClientKeyEnv)
		if strings.TrimSpace(text) == "" {
			return nil, fmt.Errorf("no SSH key for the bot: set %s or pass --ssh-key", ClientKeyEnv)
		}
		return ParseClientKey([]byte(text))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the bot's SSH key: %w", err)
	}
	defer clear(b)
	return ParseClientKey(b)
}
