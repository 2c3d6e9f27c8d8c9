package deployer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/nixdeploy/nixdeploy"
)

// KnownHostsLine is the known_hosts entry pinning addr:port to key, the
// form OpenSSH looks up: the bare address on port 22, [addr]:port
// otherwise (sshd(8), SSH_KNOWN_HOSTS FILE FORMAT).
func KnownHostsLine(addr string, port int, key ssh.PublicKey) string {
	host := addr
	if port != 0 && port != nixdeploy.DefaultSSHPort {
		host = "[" + addr + "]:" + strconv.Itoa(port)
	}
	return host + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key))) + "\n"
}

// checkFilled refuses an argv that still holds a placeholder: a command
// must never run with "<tmp>" or "<flake>" in it.
func checkFilled(argv []string) error {
	for _, a := range argv {
		for _, p := range []string{TempDir, LockedFlake, LockedInstaller} {
			if strings.Contains(a, p) {
				return fmt.Errorf("internal error: %s was not resolved before the command ran", p)
			}
		}
	}
	return nil
}

// runnerSystem is the runner's Nix system: the bot's own for a local
// runner, else `uname -m` on the runner, asked once per Deployer.
func (h *hostRun) runnerSystem(ctx context.Context) (string, error) {
	if h.d.runner == nil {
		return localSystem(), nil
	}
	h.d.mu.Lock()
	sys := h.d.runnerSys
	h.d.mu.Unlock()
	if sys != "" {
		return sys, nil
	}
	var buf capBuffer
	if err := h.command(ctx, Step{Name: "runner-system", Where: WhereRunner, Argv: []string{"uname", "-m"}}, &buf); err != nil {
		return "", fmt.Errorf("ask the runner for its system (uname -m): %w", err)
	}
	out := strings.TrimSpace(buf.String())
	if out == "" || strings.ContainsAny(out, " \n") {
		return "", fmt.Errorf("uname -m on the runner printed %q", truncate(out, 60))
	}
	sys = nixSystem(out)
	h.d.mu.Lock()
	h.d.runnerSys = sys
	h.d.mu.Unlock()
	return sys, nil
}

// withAgent gives a command the bot's key through an SSH agent: forwarded
// over the runner's SSH connection, or served on <tmp>/agent.sock (0600)
// for a local runner. Nothing is written on the runner.
func (h *hostRun) withAgent(ctx context.Context, ex executor, c *command) error {
	keyring := signerAgent{h.d.opts.ClientKey}
	switch e := ex.(type) {
	case *sshExec:
		c.agent = keyring
		return nil
	default:
		if h.tmp == "" {
			return errors.New("internal error: no run directory for the agent socket")
		}
		if h.agent == nil {
			a, err := listenAgent(filepath.Join(h.tmp, agentSocket), keyring, h.log)
			if err != nil {
				return err
			}
			h.agent = a
		}
		_ = e
		c.env = append(c.env, "SSH_AUTH_SOCK="+h.agent.path)
		return nil
	}
}

// signerAgent is an agent that holds exactly the bot's key and refuses to
// change: a forwarded agent the runner could add keys to or remove the bot's
// key from would be a surprise.
type signerAgent struct{ s ssh.Signer }

var errReadOnlyAgent = errors.New("the nixdeploy agent is read-only")

func (a signerAgent) List() ([]*agent.Key, error) {
	pk := a.s.PublicKey()
	return []*agent.Key{{Format: pk.Type(), Blob: pk.Marshal(), Comment: "nixdeploy"}}, nil
}

func (a signerAgent) Sign(key ssh.PublicKey, data []byte) (*ssh.Signature, error) {
	return a.SignWithFlags(key, data, 0)
}

func (a signerAgent) SignWithFlags(key ssh.PublicKey, data []byte, flags agent.SignatureFlags) (*ssh.Signature, error) {
	if !bytes.Equal(key.Marshal(), a.s.PublicKey().Marshal()) {
		return nil, errors.New("the nixdeploy agent does not hold that key")
	}
	if as, ok := a.s.(ssh.AlgorithmSigner); ok {
		switch {
		case flags&agent.SignatureFlagRsaSha256 != 0:
			return as.SignWithAlgorithm(nil, data, ssh.KeyAlgoRSASHA256)
		case flags&agent.SignatureFlagRsaSha512 != 0:
			return as.SignWithAlgorithm(nil, data, ssh.KeyAlgoRSASHA512)
		}
	}
	return a.s.Sign(nil, data)
}

func (a signerAgent) Extension(string, []byte) ([]byte, error) {
	return nil, agent.ErrExtensionUnsupported
}
func (a signerAgent) Add(agent.AddedKey) error       { return errReadOnlyAgent }
func (a signerAgent) Remove(ssh.PublicKey) error     { return errReadOnlyAgent }
func (a signerAgent) RemoveAll() error               { return errReadOnlyAgent }
func (a signerAgent) Lock([]byte) error              { return errReadOnlyAgent }
func (a signerAgent) Unlock([]byte) error            { return errReadOnlyAgent }
func (a signerAgent) Signers() ([]ssh.Signer, error) { return []ssh.Signer{a.s}, nil }

// localAgent serves the bot's key on a unix socket for a local runner.
type localAgent struct {
	path string
	ln   net.Listener
	wg   sync.WaitGroup
}

func listenAgent(path string, keyring agent.Agent, log interface{ Warn(string, ...any) }) (*localAgent, error) {
	ln, err := net.Listen("unix", path)
	if err != nil && errors.Is(err, syscall.EADDRINUSE) {
		// A reattach: the socket of the process that died is left, and
		// the step still uses this path. Nobody answers on it any more.
		if c, derr := net.Dial("unix", path); derr == nil {
			c.Close()
		} else if os.Remove(path) == nil {
			ln, err = net.Listen("unix", path)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("start the SSH agent for the local runner: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("start the SSH agent for the local runner: %w", err)
	}
	a := &localAgent{path: path, ln: ln}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			a.wg.Add(1)
			go func() {
				defer a.wg.Done()
				defer conn.Close()
				if err := agent.ServeAgent(keyring, conn); !errors.Is(err, io.EOF) {
					log.Warn("ssh agent connection", "err", err)
				}
			}()
		}
	}()
	return a, nil
}

func (a *localAgent) close() {
	a.ln.Close()
	os.Remove(a.path)
}

// flakeMetadata is the part of `nix flake metadata --json` the deployer
// reads. Nix documents "revision" (the commit), "locked" (the locked
// attributes, rev among them) and the locked URL, named "url" since Nix
// 2.19 and "lockedUrl" before (nix3-flake-metadata(1), --json).
type flakeMetadata struct {
	Revision  string `json:"revision"`
	URL       string `json:"url"`
	LockedURL string `json:"lockedUrl"`
	Locked    struct {
		Rev string `json:"rev"`
	} `json:"locked"`
}

var revisionRE = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)

// ParseFlakeMetadata reads the revision and locked URL from nix flake
// metadata --json. A flake without a commit (uncommitted changes, a path:
// flake) is refused: it cannot be pinned, so what was approved could not be
// what runs.
func ParseFlakeMetadata(flake string, out []byte) (revision, url string, err error) {
	var m flakeMetadata
	if err := json.Unmarshal(out, &m); err != nil {
		return "", "", fmt.Errorf("nix flake metadata for %s did not print JSON: %w", flake, err)
	}
	rev := m.Revision
	if rev == "" {
		rev = m.Locked.Rev
	}
	url = m.URL
	if url == "" {
		url = m.LockedURL
	}
	switch {
	case rev == "":
		return "", "", fmt.Errorf("%s has no revision (uncommitted changes, or not a git flake); commit and push before deploying", flake)
	case !revisionRE.MatchString(rev):
		return "", "", fmt.Errorf("nix flake metadata for %s printed revision %q, which is not a commit hash", flake, truncate(rev, 80))
	case url == "" || strings.ContainsAny(url, "# \t\n'\"") || !strings.Contains(url, rev):
		return "", "", fmt.Errorf("nix flake metadata for %s printed no usable locked URL for revision %s", flake, rev)
	}
	return rev, url, nil
}

// lock runs a KindLock step and keeps the locked URL for later steps.
func (h *hostRun) lock(ctx context.Context, st Step) error {
	out, err := h.capture(ctx, st)
	if err != nil {
		return err
	}
	flake := st.Argv[len(st.Argv)-1]
	rev, url, err := ParseFlakeMetadata(flake, []byte(out))
	if err != nil {
		return err
	}
	if flake == h.d.cfg.InstallerFlake && st.Name == "lock-installer" {
		h.locked.InstallerRevision, h.locked.InstallerURL = rev, url
	} else {
		h.locked.Revision, h.locked.URL = rev, url
	}
	h.em.event(h.host.Name, st.Name, "%s is at revision %s", flake, rev)
	return nil
}

// ParseDisks reads the disko disk devices printed by DisksArgv and checks
// them against the config's disk: one device, the configured one.
func ParseDisks(h nixdeploy.Host, out []byte) (map[string]string, error) {
	var devs map[string]string
	if err := json.Unmarshal(out, &devs); err != nil {
		return nil, fmt.Errorf("the disko disks of %s did not evaluate to a JSON object of devices: %w", h.Name, err)
	}
	if len(devs) == 0 {
		return nil, fmt.Errorf("the installer configuration of %s has no disko disks", h.Name)
	}
	names := make([]string, 0, len(devs))
	for n := range devs {
		names = append(names, n)
	}
	sort.Strings(names)
	var other []string
	for _, n := range names {
		if devs[n] != h.Disk {
			other = append(other, fmt.Sprintf("%s=%s", n, devs[n]))
		}
	}
	if len(other) > 0 {
		return nil, fmt.Errorf("refusing to install %s: the flake's disko config formats %s, but the config's disk is %s", h.Name, strings.Join(other, ", "), h.Disk)
	}
	return devs, nil
}

// disks runs a KindDisks step.
func (h *hostRun) disks(ctx context.Context, st Step) error {
	out, err := h.capture(ctx, st)
	if err != nil {
		return err
	}
	devs, err := ParseDisks(h.host, []byte(out))
	if err != nil {
		return err
	}
	h.locked.Devices = map[string]map[string]string{h.host.Name: devs}
	return nil
}

// preflightLUKS checks, before anything runs anywhere, that a LUKS host
// has its disk key and an initrd-unlock host its pinned initrd key: disko
// wipes the disk before cryptsetup asks for the key.
func (h *hostRun) preflightLUKS() error {
	name := h.host.Name
	if h.host.LUKS() {
		b, err := h.d.opts.HostKeys.DiskKey(name)
		if err != nil {
			return fmt.Errorf("%s's disk layout uses LUKS but its disk key cannot be read (create it with keys init or keys disk-key set %s): %w", name, name, err)
		}
		ok := len(bytes.TrimSpace(b)) > 0
		clear(b)
		if !ok {
			return fmt.Errorf("%s's disk layout uses LUKS but its disk key is empty; set one with keys disk-key set %s", name, name)
		}
	}
	if i := h.host.InitrdSSH; i != nil {
		pub, err := h.d.opts.HostKeys.InitrdHostPublicKey(name)
		if err != nil {
			return fmt.Errorf("%s unlocks over initrd SSH but its pinned initrd host key cannot be read: %w", name, err)
		}
		priv, err := h.d.opts.HostKeys.InitrdHostPrivateKey(name)
		if err != nil {
			return fmt.Errorf("%s unlocks over initrd SSH but its initrd host key cannot be read: %w", name, err)
		}
		h.red.addPEM(priv)
		signer, err := ssh.ParsePrivateKey(priv)
		clear(priv)
		if err != nil || !bytes.Equal(signer.PublicKey().Marshal(), pub.Marshal()) {
			return fmt.Errorf("the initrd host key of %s does not match its .pub; fix the key store before installing", name)
		}
	}
	h.em.event(name, "preflight", "%s", h.host.BootNote())
	return nil
}
