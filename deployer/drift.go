package deployer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/nixdeploy/nixdeploy"
)

// The drift board's reading of hosts: each host's running and booted
// system over its pinned SSH connection, one session per host, and the
// system the flake's current locked revision evaluates to, on the runner,
// once per revision.

// ReadSystemsScript prints, for each link given, the link and its target
// ("" when it is missing), one a line. One session reads both links; a
// missing link shows as such instead of shifting the other's line, which
// `readlink A B` would do (coreutils readlink prints nothing for a link
// it cannot read). Exported so a simulated host (internal/simfleet)
// recognises exactly what is sent.
const ReadSystemsScript = `for l in "$@"; do printf '%s %s\n' "$l" "$(readlink "$l")"; done`

// readSystemsArgv reads /run/current-system and /run/booted-system.
func (d *Deployer) readSystemsArgv() []string {
	return []string{"sh", "-c", ReadSystemsScript, "sh", d.opts.CurrentSystemPath, d.opts.BootedSystemPath}
}

// ToplevelsArgv evaluates, in one nix process, the system of each of attrs
// in flake's nixosConfigurations: {"rk1-node1": "/nix/store/…", …}. It is
// the out path nixos-rebuild-ng builds for the host (nix build
// --print-out-paths <flake>#nixosConfigurations."<attr>".config.system.build.toplevel,
// nixos_rebuild/nix.py nixos_build_flake), evaluated and not built: nix
// eval [option...] installable with --json and --apply (nix eval --help,
// Nix 2.8 and later). An attribute the flake lacks is left out of the
// answer rather than failing the rest (builtins.intersectAttrs).
func ToplevelsArgv(flake string, attrs []string) []string {
	return append(append([]string{"nix"}, nixFlags...), "eval", "--json", flake+"#nixosConfigurations", "--apply", ToplevelsApply(attrs))
}

// ToplevelsApply is the --apply function of ToplevelsArgv. Attribute
// names are validated by the config (letters, digits, '-', '_', '.'), so
// quoting them needs no escapes.
func ToplevelsApply(attrs []string) string {
	var b strings.Builder
	b.WriteString("cs: builtins.mapAttrs (n: c: c.config.system.build.toplevel.outPath) (builtins.intersectAttrs {")
	for _, a := range attrs {
		b.WriteString(" " + strconv.Quote(a) + " = null;")
	}
	b.WriteString(" } cs)")
	return b.String()
}

// evalCache keeps evaluated systems per locked revision: a revision's
// systems never change, so 100 hosts on one revision are evaluated once.
type evalCache struct {
	// mu serialises evaluations, so two boards read at once evaluate a
	// revision once between them.
	mu    sync.Mutex
	paths map[string]map[string]string // revision → attr → system
}

// maxCachedRevisions bounds the cache; older revisions are dropped whole.
const maxCachedRevisions = 8

// expectation is what the runner said the hosts should run.
type expectation struct {
	revision string
	paths    map[string]string // attr → system
	// why says per attr (or for all, under "") why it is not known.
	why map[string]string
}

func (e *expectation) of(attr string) (string, string) {
	if p, ok := e.paths[attr]; ok {
		return p, ""
	}
	if w, ok := e.why[attr]; ok {
		return "", w
	}
	return "", e.why[""]
}

// ReadHosts reads hosts (every host of the config when none are named) for
// the drift board: each host's running and booted system in one session
// over its pinned SSH connection, at most Options.ReadParallel hosts at a
// time, while the runner locks the flake and evaluates the expected
// systems (once per revision, cached). A host that cannot be read, or
// whose expected system is not known, reads as drift unknown with the
// reason; only an unknown host name is an error.
func (d *Deployer) ReadHosts(ctx context.Context, names []string) ([]nixdeploy.HostReading, error) {
	// Boards asked for at once (a channel typing /nixdeploy status
	// together) share one reading, so a burst of requests does not open
	// a burst of sessions on every host. A follower shares the first
	// caller's outcome, its cancellation included.
	key := strings.Join(names, "\x00")
	d.reads.mu.Lock()
	if c, ok := d.reads.inflight[key]; ok {
		d.reads.mu.Unlock()
		select {
		case <-c.done:
			return slices.Clone(c.out), c.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c := &readCall{done: make(chan struct{})}
	if d.reads.inflight == nil {
		d.reads.inflight = map[string]*readCall{}
	}
	d.reads.inflight[key] = c
	d.reads.mu.Unlock()
	defer func() {
		d.reads.mu.Lock()
		delete(d.reads.inflight, key)
		d.reads.mu.Unlock()
		close(c.done)
	}()
	c.out, c.err = d.readHosts(ctx, names)
	return slices.Clone(c.out), c.err
}

// readCalls are the readings in flight, by the hosts asked for.
type readCalls struct {
	mu       sync.Mutex
	inflight map[string]*readCall
}

type readCall struct {
	done chan struct{}
	out  []nixdeploy.HostReading
	err  error
}

func (d *Deployer) readHosts(ctx context.Context, names []string) ([]nixdeploy.HostReading, error) {
	var hosts []nixdeploy.Host
	if len(names) == 0 {
		hosts = slices.Clone(d.cfg.Hosts)
	}
	for _, n := range names {
		h, ok := d.cfg.Host(n)
		if !ok {
			return nil, fmt.Errorf("%w: %q is not in the fleet config", nixdeploy.ErrUnknownHost, n)
		}
		hosts = append(hosts, h)
	}
	if d.opts.ClientKey == nil {
		// No key to reach anything: every host reads as unknown, with
		// the sentence deployments fail with.
		out := make([]nixdeploy.HostReading, len(hosts))
		for i, h := range hosts {
			out[i] = nixdeploy.HostReading{Host: h.Name, Drift: nixdeploy.DriftUnknown, Why: d.opts.NoClientKey.Error(), At: d.opts.Now()}
		}
		return out, nil
	}
	log := d.log.With("op", "read-hosts")
	r := &run{d: d, dl: d.newDialer(log), log: log}
	defer r.close()

	expc := make(chan *expectation, 1)
	go func() { expc <- d.expect(ctx, r, hosts) }()

	out := make([]nixdeploy.HostReading, len(hosts))
	sem := make(chan struct{}, d.opts.ReadParallel)
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i] = d.readHost(ctx, r.dl, h)
		})
	}
	wg.Wait()
	exp := <-expc
	for i := range out {
		judge(&out[i], hosts[i], exp)
	}
	return out, nil
}

// judge fills in the expected system and the verdict of a reading.
func judge(rd *nixdeploy.HostReading, h nixdeploy.Host, exp *expectation) {
	rd.Revision = exp.revision
	rd.Expected, _ = exp.of(h.FlakeAttr)
	rd.RebootPending = rd.Booted != "" && rd.Running != "" && rd.Booted != rd.Running
	switch {
	case rd.Drift == nixdeploy.DriftUnknown:
		// The host could not be read; readHost said why.
	case rd.Running == "":
		rd.Drift, rd.Why = nixdeploy.DriftUnknown, h.Name+" has no /run/current-system (not a NixOS system?)"
	case rd.Expected == "":
		_, why := exp.of(h.FlakeAttr)
		rd.Drift, rd.Why = nixdeploy.DriftUnknown, why
	case rd.Running == rd.Expected:
		rd.Drift, rd.Why = nixdeploy.DriftNo, ""
	default:
		rd.Drift = nixdeploy.DriftYes
		rd.Why = fmt.Sprintf("%s does not run the system of revision %s", h.Name, nixdeploy.ShortRevision(exp.revision))
	}
}

// readHost reads one host's running and booted system in one session.
func (d *Deployer) readHost(ctx context.Context, dl *dialer, h nixdeploy.Host) (rd nixdeploy.HostReading) {
	rd.Host = h.Name
	defer func() { rd.At = d.opts.Now() }()
	ctx, cancel := context.WithTimeout(ctx, d.opts.ReadTimeout)
	defer cancel()
	unknown := func(why string) nixdeploy.HostReading {
		rd.Drift, rd.Why = nixdeploy.DriftUnknown, why
		return rd
	}
	pk, err := d.opts.HostKeys.HostPublicKey(h.Name)
	if err != nil {
		d.log.Warn("read host: pinned key", "host", h.Name, "err", err)
		return unknown(fmt.Sprintf("the pinned host key of %s cannot be read (keys/%s_ssh_host_ed25519_key.pub)", h.Name, h.Name))
	}
	ep := endpoint{name: h.Name, user: d.opts.TargetUser, addr: h.SSHAddr(), key: pinnedKey(h.Name, pk)}
	c, err := dl.dial(ctx, ep)
	if err != nil {
		d.log.Info("read host: unreachable", "host", h.Name, "err", err)
		return unknown(unreachableReason(h, err, min(d.opts.ConnectTimeout, d.opts.ReadTimeout).String()))
	}
	ex := &sshExec{c: c, maxLine: d.opts.MaxLineBytes, killGrace: d.opts.KillGrace}
	defer ex.close()
	out, err := captureOn(ctx, ex, d.readSystemsArgv())
	if err != nil {
		d.log.Info("read host: read links", "host", h.Name, "err", err)
		if ctx.Err() != nil {
			return unknown(fmt.Sprintf("%s did not answer within %s", h.Name, d.opts.ReadTimeout))
		}
		return unknown(fmt.Sprintf("%s could not read its system links: %s", h.Name, oneLine(err)))
	}
	links := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok {
			links[k] = strings.TrimSpace(v)
		}
	}
	rd.Running, rd.Booted = links[d.opts.CurrentSystemPath], links[d.opts.BootedSystemPath]
	return rd
}

// unreachableReason says in one sentence why a host could not be reached.
func unreachableReason(h nixdeploy.Host, err error, timeout string) string {
	var hk *HostKeyError
	var errno syscall.Errno
	var ne net.Error
	switch {
	case errors.As(err, &hk):
		return fmt.Sprintf("%s presented a host key other than its pinned one (%s); nothing was sent to it", h.Name, hk.Got)
	case errors.Is(err, ErrAuth):
		return fmt.Sprintf("%s refused the bot's SSH key", h.Name)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("%s (%s) did not answer within %s", h.Name, h.SSHAddr(), timeout)
	case errors.As(err, &errno):
		return fmt.Sprintf("%s (%s) is unreachable: %s", h.Name, h.SSHAddr(), errno.Error())
	}
	return fmt.Sprintf("%s (%s) is unreachable: %s", h.Name, h.SSHAddr(), oneLine(err))
}

// oneLine is the innermost message of err, on one line.
func oneLine(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && i+2 < len(s) {
		s = s[i+2:]
	}
	return truncate(strings.Join(strings.Fields(s), " "), 200)
}

// expect locks the flake on the runner and returns the expected system of
// each host, from the cache when the revision was evaluated before.
func (d *Deployer) expect(ctx context.Context, r *run, hosts []nixdeploy.Host) *expectation {
	exp := &expectation{paths: map[string]string{}, why: map[string]string{}}
	ex, err := r.runnerExec(ctx)
	if err != nil {
		d.log.Warn("read hosts: runner", "err", err)
		exp.why[""] = "the runner could not be reached to evaluate the flake: " + oneLine(err)
		return exp
	}
	lockArgv := append(append([]string{"nix"}, nixFlags...), "flake", "metadata", "--json", d.cfg.Flake)
	out, err := captureOn(ctx, ex, lockArgv)
	if err != nil {
		d.log.Warn("read hosts: lock the flake", "err", err)
		exp.why[""] = "the flake could not be locked on the runner: " + oneLine(err)
		return exp
	}
	rev, url, err := ParseFlakeMetadata(d.cfg.Flake, out)
	if err != nil {
		exp.why[""] = err.Error()
		return exp
	}
	exp.revision = rev

	c := &d.evals
	c.mu.Lock()
	defer c.mu.Unlock()
	cached := c.paths[rev]
	var missing []string
	for _, h := range hosts {
		if p, ok := cached[h.FlakeAttr]; ok {
			exp.paths[h.FlakeAttr] = p
		} else if !slices.Contains(missing, h.FlakeAttr) {
			missing = append(missing, h.FlakeAttr)
		}
	}
	if len(missing) == 0 {
		return exp
	}
	got, err := d.evalToplevels(ctx, ex, url, missing)
	if err != nil && len(missing) > 1 {
		// One host that does not evaluate must not hide the others:
		// ask for each on its own.
		d.log.Warn("read hosts: evaluate all, trying one by one", "err", err)
		got = map[string]string{}
		for _, a := range missing {
			one, err := d.evalToplevels(ctx, ex, url, []string{a})
			if err != nil {
				exp.why[a] = fmt.Sprintf("nixosConfigurations.%s does not evaluate at revision %s: %s", a, nixdeploy.ShortRevision(rev), err)
				continue
			}
			got[a] = one[a]
		}
	} else if err != nil {
		for _, a := range missing {
			exp.why[a] = fmt.Sprintf("nixosConfigurations.%s does not evaluate at revision %s: %s", a, nixdeploy.ShortRevision(rev), err)
		}
		return exp
	}
	if c.paths == nil || len(c.paths) >= maxCachedRevisions && c.paths[rev] == nil {
		c.paths = map[string]map[string]string{}
	}
	if c.paths[rev] == nil {
		c.paths[rev] = map[string]string{}
	}
	for _, a := range missing {
		p, ok := got[a]
		switch {
		case ok:
			c.paths[rev][a] = p
			exp.paths[a] = p
		case exp.why[a] == "":
			exp.why[a] = fmt.Sprintf("the flake at revision %s has no nixosConfigurations.%s", nixdeploy.ShortRevision(rev), a)
		}
	}
	return exp
}

// evalToplevels runs ToplevelsArgv and checks its answer: a JSON object of
// store paths. A failure says what nix said first ("error: …"), the line
// that names the problem; the trace after it is in the log.
func (d *Deployer) evalToplevels(ctx context.Context, ex executor, url string, attrs []string) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, d.opts.EvalTimeout)
	defer cancel()
	var out strings.Builder
	var first, last string
	err := ex.run(ctx, command{argv: ToplevelsArgv(url, attrs), note: func(string) {}, out: func(s nixdeploy.Stream, b []byte) {
		if s == nixdeploy.StreamStdout {
			if out.Len() < 4<<20 {
				out.Write(b)
			}
			return
		}
		l := strings.TrimSpace(string(b))
		if first == "" && strings.HasPrefix(l, "error:") {
			first = l
		}
		if l != "" {
			last = l
		}
	}})
	if err != nil {
		d.log.Warn("evaluate the expected systems", "err", err, "first_error", first, "last_output", last)
		switch {
		case first != "":
			return nil, errors.New(truncate(strings.TrimSpace(strings.TrimPrefix(first, "error:")), 200))
		case last != "":
			return nil, fmt.Errorf("%w (last output: %s)", err, truncate(last, 200))
		}
		return nil, err
	}
	var got map[string]string
	if err := json.Unmarshal([]byte(out.String()), &got); err != nil {
		return nil, fmt.Errorf("nix eval of the systems did not print a JSON object of paths: %w", err)
	}
	for a, p := range got {
		if !strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("nix eval printed %q for %s, which is not a store path", truncate(p, 80), a)
		}
	}
	return got, nil
}
