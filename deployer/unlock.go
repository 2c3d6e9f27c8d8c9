package deployer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/nixdeploy/nixdeploy"
)

// UnlockCommand is run in a host's initrd over its SSH server, with the
// LUKS passphrase on stdin. nixpkgs' scripted stage 1 (luksroot.nix) gives
// initrd SSH logins cryptsetup-askpass, which reads the passphrase and hands
// it to the waiting cryptsetup. The one place the command is named.
const UnlockCommand = "cryptsetup-askpass"

// maxUnlocks bounds how often one wait sends the passphrase: a host that
// keeps returning to its initrd has the wrong one.
const maxUnlocks = 3

// ErrNoInitrdSSH: the host has no initrd SSH server in the config.
var ErrNoInitrdSSH = errors.New("no initrd SSH server configured")

func (h *hostRun) initrdEndpoint() (endpoint, error) {
	i := h.host.InitrdSSH
	pk, err := h.d.opts.HostKeys.InitrdHostPublicKey(h.host.Name)
	if err != nil {
		return endpoint{}, fmt.Errorf("read the pinned initrd host key of %s: %w", h.host.Name, err)
	}
	return endpoint{
		name: h.host.Name + " (initrd)", user: h.d.opts.TargetUser,
		addr: net.JoinHostPort(h.host.Address, strconv.Itoa(i.Port)),
		key:  pinnedKey(h.host.Name+" (initrd)", pk),
	}, nil
}

// tryUnlock dials the initrd; when it answers with its pinned key it gets
// the passphrase. It reports whether the passphrase was sent.
func (h *hostRun) tryUnlock(ctx context.Context) (bool, error) {
	ep, err := h.initrdEndpoint()
	if err != nil {
		return false, err
	}
	c, err := h.dl.dial(ctx, ep)
	if err != nil {
		// Nothing answers yet, or something else does (the installer, the
		// booted system): a key mismatch aborts before anything is sent,
		// and the passphrase goes only to the pinned initrd.
		return false, nil
	}
	ex := &sshExec{c: c, maxLine: h.d.opts.MaxLineBytes, killGrace: h.d.opts.KillGrace}
	defer ex.close()
	if h.unlocks >= maxUnlocks {
		return false, fmt.Errorf("%s is still waiting in its initrd after %d passphrases; check keys/%s_disk_key and unlock at the console", h.host.Name, maxUnlocks, h.host.Name)
	}
	h.unlocks++
	pass, err := h.input(InputDiskKey)
	if err != nil {
		return false, err
	}
	defer clear(pass)
	h.em.event(h.host.Name, "wait-for-ssh", "%s waits in its initrd (pinned initrd key); sending the disk passphrase", h.host.Name)
	// askPass reads one line (IFS= read -rs): the key store's file has no
	// newline, so one is added, or the read hits end of file and nothing
	// is handed on. Its exit status means nothing (it exits 1 after a
	// success too); a second prompt, which ends in "End of file reached",
	// means the passphrase was refused. Only the booted system's pinned
	// key proves the unlock.
	line := append(append(make([]byte, 0, len(pass)+1), pass...), '\n')
	defer clear(line)
	var out capBuffer
	cmd := h.cmd(Step{Name: "wait-for-ssh"}, []string{UnlockCommand}, bytes.NewReader(line), nil)
	emit := cmd.out
	cmd.out = func(stream nixdeploy.Stream, b []byte) {
		out.add(b) // both streams: askPass reports on stderr
		emit(stream, b)
	}
	err = ex.run(ctx, cmd)
	if strings.Contains(out.String(), askpassEOF) {
		return true, fmt.Errorf("the initrd of %s did not accept the disk passphrase; check keys/%s_disk_key and unlock at the console", h.host.Name, h.host.Name)
	}
	if err != nil && !errors.Is(err, ErrConnectionLost) && h.unlocks > 1 {
		// The initrd may end the session as it switches root; only a
		// clean failure is reported, and the wait goes on either way.
		h.em.event(h.host.Name, "wait-for-ssh", "unlock on %s: %v", h.host.Name, err)
	}
	return true, nil
}

// askpassEOF is what luksroot.nix's askPass prints when it is asked for a
// passphrase again and stdin is spent: the one sign of a refused passphrase.
const askpassEOF = "End of file reached"

// Unlock sends host's disk passphrase to its initrd SSH server, for
// "/nixdeploy unlock-disk HOST" after a reboot. The initrd must present its
// pinned key; the passphrase is never logged.
func (d *Deployer) Unlock(ctx context.Context, host string, sinks ...Sink) error {
	if d.opts.ClientKey == nil {
		return d.opts.NoClientKey
	}
	h, ok := d.cfg.Host(host)
	if !ok {
		return fmt.Errorf("%w: %q is not in the fleet config", nixdeploy.ErrUnknownHost, host)
	}
	if h.InitrdSSH == nil || !h.LUKS() {
		return fmt.Errorf("%w: %s has no initrd_ssh in the fleet config", ErrNoInitrdSSH, host)
	}
	// An unlock is no deployment: its lines go to the sinks only.
	log := d.log.With("host", host, "op", "unlock")
	o := d.opts
	o.Store = nopStore{}
	red := newRedactor(d.secrets())
	r := &run{d: d, dep: &nixdeploy.Deployment{Hosts: []string{host}}, red: red,
		em: newEmitter(ctx, &o, 0, red, sinks, log), dl: d.newDialer(log), log: log}
	defer func() {
		r.close()
		r.em.close()
	}()
	hr := &hostRun{run: r, host: h, log: r.log, locked: &nixdeploy.Lock{}}
	ep, err := hr.initrdEndpoint()
	if err != nil {
		return err
	}
	c, err := r.dl.dial(ctx, ep)
	if err != nil {
		return fmt.Errorf("reach the initrd of %s: %w", host, err)
	}
	c.Close()
	sent, err := hr.tryUnlock(ctx)
	if err != nil {
		return err
	}
	if !sent {
		return fmt.Errorf("the initrd of %s stopped answering before the passphrase was sent", host)
	}
	return nil
}

// nopStore drops what an unlock would record.
type nopStore struct{}

func (nopStore) AppendLogs(context.Context, int64, []nixdeploy.LogLine) error  { return nil }
func (nopStore) RecordStep(context.Context, int64, nixdeploy.StepResult) error { return nil }
func (nopStore) SetRevision(context.Context, int64, string) error              { return nil }
