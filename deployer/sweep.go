package deployer

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// SweepScript removes stale run directories on the runner: directories
// named like mktemp -d's (tmp.*) under $TMPDIR (default /tmp), owned by the
// runner's user, holding a known_hosts file and nothing but the files the
// deployer and its supervisor make, with no live supervisor, and untouched
// (the directory and the files in it) for longer than $1 seconds. It prints
// "swept KEYS DIR" for each one it removed, KEYS 1 when it still held key
// material (extra-files or disk.key). POSIX sh and coreutils (stat, date).
// *.status.new is no longer made (the supervisor writes F.status in place)
// but stays in the list for run directories left by older versions.
const SweepScript = `set -u
age=$1
now=$(date +%s)
for d in "${TMPDIR:-/tmp}"/tmp.*; do
	if [ ! -d "$d" ] || [ -L "$d" ] || [ ! -O "$d" ] || [ ! -f "$d/known_hosts" ]; then continue; fi
	ours=1
	for e in "$d"/* "$d"/.[!.]*; do
		[ -e "$e" ] || [ -L "$e" ] || continue
		case ${e##*/} in
		known_hosts|extra-files|disk.key|agent.sock|agent.sock.new|*.out|*.err|*.status|*.status.new|*.pid|*.pgid) ;;
		*) ours=0 ;;
		esac
	done
	[ "$ours" = 1 ] || continue
	young=0
	for e in "$d" "$d"/*; do
		[ -e "$e" ] || continue
		t=$(stat -c %Y -- "$e") || { young=1; break; }
		[ $((now - t)) -gt "$age" ] || { young=1; break; }
	done
	[ "$young" = 0 ] || continue
	live=0
	for p in "$d"/*.pid; do
		if [ ! -f "$p" ] || [ -f "${p%.pid}.status" ]; then continue; fi
		pid=$(cat -- "$p")
		if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then live=1; fi
	done
	[ "$live" = 0 ] || continue
	keys=0
	if [ -e "$d/extra-files" ] || [ -e "$d/disk.key" ]; then keys=1; fi
	rm -rf -- "$d" && echo "swept $keys $d"
done`

// SweptDir is a stale run directory the sweep removed from the runner.
type SweptDir struct {
	Dir string
	// Keys: it still held key material (a host key, an initrd key or a
	// disk key), which a crash before the step's supervisor ran left.
	Keys bool
}

// SweepAge is how long a run directory must have been untouched to be
// stale: the longest step timeout.
func (d *Deployer) SweepAge() time.Duration {
	t := d.opts.Timeouts
	return max(t.Command, t.Install, t.Rebuild, t.WaitSSH, t.Verify)
}

// Sweep removes stale run directories on the runner (SweepScript, older
// than SweepAge) and settles the remote steps whose end the bot gave up
// learning: one whose status file is there, or whose supervisor is gone,
// is recorded ended, which frees its host. It returns what it removed;
// the caller reports each one.
func (d *Deployer) Sweep(ctx context.Context) ([]SweptDir, error) {
	log := d.log.With("task", "sweep")
	r := &run{d: d, dl: d.newDialer(log), log: log}
	defer r.close()
	ex, err := r.runnerExec(ctx)
	if err != nil {
		return nil, fmt.Errorf("sweep: reach the runner: %w", err)
	}
	d.settleUnknown(ctx, ex)
	var out capBuffer
	var stderr capBuffer
	c := command{
		argv: []string{"sh", "-c", SweepScript, "nixdeploy-sweep", strconv.FormatInt(int64(d.SweepAge()/time.Second), 10)},
		out: func(stream nixdeploy.Stream, b []byte) {
			if stream == nixdeploy.StreamStdout {
				out.add(b)
			} else {
				stderr.add(b)
			}
		},
		note: func(string) {},
	}
	cctx, cancel := context.WithTimeout(ctx, d.opts.Timeouts.Command)
	defer cancel()
	if err := ex.run(cctx, c); err != nil {
		return nil, fmt.Errorf("sweep the runner's run directories: %w (%s)", err, truncate(strings.TrimSpace(stderr.String()), 200))
	}
	var swept []SweptDir
	for _, line := range strings.Split(out.String(), "\n") {
		f := strings.SplitN(line, " ", 3)
		if len(f) == 3 && f[0] == "swept" {
			swept = append(swept, SweptDir{Dir: f[2], Keys: f[1] == "1"})
		}
	}
	return swept, nil
}

// settleUnknown records the end of remote steps of unknown end that the
// runner now knows ended, or whose supervisor is gone.
func (d *Deployer) settleUnknown(ctx context.Context, ex executor) {
	rstore, ok := d.opts.Store.(interface {
		RemoteStore
		OpenRemoteSteps(ctx context.Context) ([]nixdeploy.RemoteStep, error)
	})
	if !ok {
		return
	}
	open, err := rstore.OpenRemoteSteps(ctx)
	if err != nil {
		d.log.Error("sweep: read the open remote steps", "err", err)
		return
	}
	for _, rs := range open {
		if rs.State != nixdeploy.RemoteUnknown || rs.Runner != d.runnerName() {
			continue
		}
		var out capBuffer
		c := command{argv: supervisorArgv("probe", rs.Dir, rs.Name), supervised: true,
			out: func(stream nixdeploy.Stream, b []byte) {
				if stream == nixdeploy.StreamStdout {
					out.add(b)
				}
			}, note: func(string) {}}
		cctx, cancel := context.WithTimeout(ctx, d.opts.Timeouts.Command)
		err := ex.run(cctx, c)
		cancel()
		answer := strings.TrimSpace(out.String())
		code := -1
		switch {
		case err != nil:
			continue
		case strings.HasPrefix(answer, "ended "):
			code, _ = strconv.Atoi(strings.TrimPrefix(answer, "ended "))
		case answer != "gone":
			continue
		}
		if err := rstore.EndRemoteStep(ctx, rs.ID, nixdeploy.RemoteEnded, code); err != nil {
			d.log.Error("sweep: record the end of a remote step", "err", err)
			continue
		}
		d.log.Info("sweep: a step of unknown end has ended; its host is free", "deployment", rs.DeploymentID, "host", rs.Host, "step", rs.Step, "exit", code)
	}
}
