package deployer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/nixdeploy/nixdeploy"
)

// Resolve asks the runner what dep would deploy: the flake's locked
// revision and, for an install, the installer flake's and each host's
// disko disk devices, refusing a device other than the config's disk. The
// bot shows the result in the approval message and binds the approval to
// it; a run given dep.Lock uses it instead of resolving again.
func (d *Deployer) Resolve(ctx context.Context, dep nixdeploy.Deployment) (*nixdeploy.Lock, error) {
	plans, err := d.plans(&dep)
	if err != nil {
		return nil, err
	}
	if d.opts.ClientKey == nil {
		// Nothing can be asked on the runner; the run fails with
		// NoClientKey before it touches anything.
		return nil, nil
	}
	log := d.log.With("op", "resolve")
	r := &run{d: d, dl: d.newDialer(log), log: log}
	defer r.close()
	ex, err := r.runnerExec(ctx)
	if err != nil {
		return nil, err
	}
	if dep.Action == nixdeploy.ActionFlash {
		return d.resolveFlash(ctx, ex, dep)
	}
	lock := &nixdeploy.Lock{}
	for _, p := range plans {
		for _, st := range p.Steps {
			switch {
			case st.Kind == KindLock && st.Name == "lock-installer" && lock.InstallerURL != "":
				continue
			case st.Kind == KindLock && st.Name != "lock-installer" && lock.URL != "":
				continue
			case st.Kind != KindLock && st.Kind != KindDisks:
				continue
			}
			out, err := captureOn(ctx, ex, fill(st.Argv, "", lock))
			if err != nil {
				return nil, fmt.Errorf("%s on the runner: %w", st.Name, err)
			}
			if st.Kind == KindDisks {
				devs, err := ParseDisks(p.Host, out)
				if err != nil {
					return nil, err
				}
				if lock.Devices == nil {
					lock.Devices = map[string]map[string]string{}
				}
				lock.Devices[p.Host.Name] = devs
				continue
			}
			flake := st.Argv[len(st.Argv)-1]
			rev, url, err := ParseFlakeMetadata(flake, out)
			if err != nil {
				return nil, err
			}
			if st.Name == "lock-installer" {
				lock.InstallerRevision, lock.InstallerURL = rev, url
			} else {
				lock.Revision, lock.URL = rev, url
			}
		}
	}
	return lock, nil
}

// captureOn runs argv on ex and returns its stdout; a failure carries the
// last line of stderr.
func captureOn(ctx context.Context, ex executor, argv []string) ([]byte, error) {
	var out, lastErr strings.Builder
	err := ex.run(ctx, command{argv: argv, out: func(s nixdeploy.Stream, b []byte) {
		if s == nixdeploy.StreamStdout {
			if out.Len() < 1<<20 {
				out.Write(b)
				out.WriteByte('\n')
			}
			return
		}
		lastErr.Reset()
		lastErr.Write(b)
	}, note: func(string) {}})
	if err != nil {
		if lastErr.Len() > 0 {
			return nil, fmt.Errorf("%w (last output: %s)", err, truncate(lastErr.String(), 300))
		}
		return nil, err
	}
	return []byte(out.String()), nil
}

// Fingerprint is a digest of what dep will run: for each host its name,
// address, disk and action, the lock (revisions, URLs, disk devices) and
// every step's argv with the lock filled in. An approval bound to it is
// void when any of them changes.
func (d *Deployer) Fingerprint(dep nixdeploy.Deployment) (string, error) {
	plans, err := d.plans(&dep)
	if err != nil {
		return "", err
	}
	return fingerprint(&dep, plans), nil
}

// fingerprint digests plans, the plans of dep.
func fingerprint(dep *nixdeploy.Deployment, plans []*Plan) string {
	h := sha256.New()
	field := func(s string) { h.Write([]byte(s)); h.Write([]byte{0}) }
	l := dep.Lock
	if l == nil {
		l = &nixdeploy.Lock{}
	}
	field(string(dep.Action))
	field(l.Revision)
	field(l.URL)
	field(l.InstallerRevision)
	field(l.InstallerURL)
	if l.Image != "" {
		// A flash: the approval names the image's bytes.
		field(l.Image)
		field(strconv.FormatInt(l.ImageSize, 10))
		field(l.ImageSHA256)
	}
	for _, p := range plans {
		if p.Action == nixdeploy.ActionFlash {
			field(p.Host.BMC + "/" + strconv.Itoa(p.Host.BMCNode))
		}
		field(p.Host.Name)
		field(p.Host.SSHAddr())
		field(p.Host.Disk)
		devs := l.Devices[p.Host.Name]
		names := make([]string, 0, len(devs))
		for n := range devs {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			field(n + "=" + devs[n])
		}
		for _, st := range p.Steps {
			field(st.Name)
			field(string(st.Where))
			for _, a := range fill(st.Argv, "", l) {
				field(a)
			}
			field(string(st.Stdin))
		}
		h.Write([]byte{0, 0})
	}
	return hex.EncodeToString(h.Sum(nil))
}
