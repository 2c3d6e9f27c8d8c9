package sshlab

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// The lab's side of the rollback guard: targets have no systemd, so the
// stubs below stand in for the transient units the deployer creates with
// systemd-run, for systemctl's is-active and stop of them, and for each
// lab system's switch-to-configuration. A unit's state is a file under
// $LAB/units/<host>/ ("<name>.timer" while the timer is loaded,
// "<name>.service" while its service runs).

// stubGuardLib is sourced with stublib.sh: systemctl's is-active and stop.
const stubGuardLib = `
UNITS=$LAB/units/${LAB_HOST:-none}

# transient_state UNIT: the state of one of the lab's transient units, or
# nothing (status 1) when UNIT is not one of them.
transient_state() {
	case $1 in nixdeploy-guard-*) ;; *) return 1;; esac
	if [ -f "$UNITS/$1" ]; then echo active; else echo inactive; fi
}

# systemctl_guard is systemctl is-active and stop (systemctl(1)).
systemctl_guard() {
	case $1 in
	is-active)
		# is-active prints each unit's state and exits 0 if at least one
		# is active, else 3 ("program is not running"). Units other than
		# the guard's are active unless the control file
		# systemctl.<host>.unit.<unit> names another state.
		shift
		[ $# -ge 1 ] || { echo "Too few arguments." >&2; exit 1; }
		rc=3
		for u in "$@"; do
			case $u in -*) bad "unexpected option $u";; esac
			if st=$(transient_state "$u"); then :; elif st=$(knob "unit.$u"); then :; else st=active; fi
			echo "$st"
			[ "$st" = active ] && rc=0
		done
		exit $rc
		;;
	stop)
		# Only the guard's units can be stopped. Stopping a timer that
		# has not elapsed keeps its service from ever starting; an
		# unknown unit fails as systemctl does (exit 5).
		shift
		[ $# -ge 1 ] || { echo "Too few arguments." >&2; exit 1; }
		for u in "$@"; do
			case $u in nixdeploy-guard-*.timer|nixdeploy-guard-*.service) ;; *) bad "the lab models stop of the guard's units only, not $u";; esac
			f=$UNITS/$u
			if [ ! -f "$f" ]; then echo "Failed to stop $u: Unit $u not loaded." >&2; exit 5; fi
			if pg=$(cat "$f.pgid" 2>/dev/null); then kill -TERM -- "-$pg" 2>/dev/null || true; fi
			rm -f "$f" "$f.pgid"
		done
		exit 0
		;;
	esac
	return 1
}
`

// stubSystemdRun is systemd-run for the one use the deployer makes of it,
// the rollback guard: a transient timer (systemd-run(1), "Timer options",
// --on-active=) that starts a transient service running COMMAND. Options
// are parsed as systemd-run's getopt_long does (--opt=value and --opt
// value; parsing stops at the first non-option, which starts the command);
// an option the guard does not use is refused, as is a run without a
// timer, a unit name or --collect, which the lab does not model. The timer
// is a detached process (its own session, none of the SSH session's
// descriptors), so killing the host's sshd does not stop it, as a real
// timer lives in PID 1. With a unit of that name loaded it fails as
// systemd does. The service runs the command in a clean environment
// (systemd-run(1): "a clean and detached execution environment") and,
// with --collect, is unloaded when it ended; the elapsed timer stays
// loaded and active (RemainAfterElapse= defaults to yes, systemd.timer(5)).
const stubSystemdRun = `TOOL=systemd-run
log_call systemd-run "$@"
need() { [ $# -ge 2 ] || { echo "systemd-run: option '$1' requires an argument" >&2; exit 1; }; }
onactive= unit= collect= quiet=
while [ $# -gt 0 ]; do
	case $1 in
	--on-active=*) onactive=${1#*=};;
	--on-active) need "$@"; onactive=$2; shift;;
	--unit=*) unit=${1#*=};;
	-u|--unit) need "$@"; unit=$2; shift;;
	--description=*) ;;
	--description) need "$@"; shift;;
	-G|--collect) collect=1;;
	-q|--quiet) quiet=1;;
	--) shift; break;;
	-*) bad "unrecognized option '$1'";;
	*) break;;
	esac
	shift
done
[ -n "$onactive" ] || bad "the lab's systemd-run models timers only (--on-active)"
[ -n "$unit" ] || bad "the lab's systemd-run models named units only (--unit)"
[ $# -gt 0 ] || bad "no command (a timer for an existing service is not modelled)"
[ -n "$collect" ] || bad "the guard's units must be collected (--collect)"
# A time span (systemd.time(7)): a number of seconds, or with ms, s or min.
case $onactive in
''|*[!0-9a-z]*) ms=;;
*ms) ms=${onactive%ms};;
*min) ms=${onactive%min}; case $ms in ''|*[!0-9]*) ms=;; *) ms=$((ms * 60000));; esac;;
*s) ms=${onactive%s}; case $ms in ''|*[!0-9]*) ms=;; *) ms=$((ms * 1000));; esac;;
*[!0-9]*) ms=;;
*) ms=$((onactive * 1000));;
esac
case $ms in ''|*[!0-9]*) echo "Failed to parse timer value: $onactive" >&2; exit 1;; esac
case $unit in *.service|*.timer) unit=${unit%.*};; esac
case $unit in *[!A-Za-z0-9:_.@-]*) echo "Failed to mangle unit name: Invalid argument" >&2; exit 1;; esac
mkdir -p "$UNITS"
if [ -e "$UNITS/$unit.timer" ] || [ -e "$UNITS/$unit.service" ]; then
	echo "Failed to start transient timer unit: Unit $unit.timer was already loaded or has a fragment file." >&2
	exit 1
fi
echo pending >"$UNITS/$unit.timer"
secs=$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))
setsid sh -c '
	u=$1 t=$2 secs=$3; shift 3
	echo $$ >"$t.pgid.tmp" && mv "$t.pgid.tmp" "$t.pgid"
	sleep "$secs"
	[ -f "$t" ] || exit 0
	rm -f "$t.pgid"
	echo elapsed >"$t"
	echo active >"$u"
	env -i PATH="$PATH" "$@" >>"$u.journal" 2>&1
	rm -f "$u"
' sh "$UNITS/$unit.service" "$UNITS/$unit.timer" "$secs" "$@" </dev/null >/dev/null 2>&1 &
# systemd-run returns once the timer is started.
i=0
while [ ! -f "$UNITS/$unit.timer.pgid" ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i + 1)); done
if [ -z "$quiet" ]; then
	echo "Running timer as unit: $unit.timer" >&2
	echo "Will run service as unit: $unit.service" >&2
fi
exit 0
`

// stubSwitch is the bin/switch-to-configuration of each lab system, with
// the lab, the host and the system's own path filled in (the guard runs
// it from systemd's clean environment). Its usage is nixpkgs'
// switch-to-configuration (nixos/modules/system/activation/
// switch-to-configuration.pl): one of switch, boot, test or dry-activate,
// else the usage and exit 1. switch and test make the system the running
// one; switch and boot its boot default.
const stubSwitch = `#!/bin/sh
# switch-to-configuration of a lab system (written by internal/sshlab).
LAB=@LAB@
C=@C@
LAB_HOST=@HOST@
sys=@SYS@
. "$LAB/bin/stublib.sh"
TOOL=switch-to-configuration
log_call switch-to-configuration "$@"
case ${1:-} in
switch|boot|test|dry-activate) [ $# -eq 1 ] || bad "extra arguments: $*";;
*)
	printf '%s\n' "Usage: $0 [switch|boot|test|dry-activate]" "" \
		"switch:       make the configuration the boot default and activate now" \
		"boot:         make the configuration the boot default" \
		"test:         activate the configuration, but don't make it the boot default" \
		"dry-activate: show what would be done if this configuration were activated" >&2
	exit 1;;
esac
case $1 in
switch|test)
	echo "activating the configuration..." >&2
	ln -sfn "$sys" "$LAB/systems/$LAB_HOST.tmp"
	mv -T "$LAB/systems/$LAB_HOST.tmp" "$LAB/systems/$LAB_HOST"
	;;
esac
case $1 in switch|boot) ln -sfn "$sys" "$LAB/profiles/$LAB_HOST";; esac
exit 0
`

// stubMksystem makes a lab system: a directory in the lab's store with the
// authorized_keys its sshd reads (a target's AuthorizedKeysFile is in its
// running system, so a system without it refuses the bot, as a broken
// sshd config would) and its switch-to-configuration.
const stubMksystem = `[ $# -eq 2 ] || { echo "usage: lab-mksystem HOST DIR" >&2; exit 2; }
host=$1 sys=$2
mkdir -p "$sys/bin"
cp "$LAB/authorized_keys" "$sys/authorized_keys"
sed -e "s|@LAB@|$LAB|" -e "s|@C@|$C|" -e "s|@HOST@|$host|" -e "s|@SYS@|$sys|" "$LAB/bin/switch-to-configuration.in" >"$sys/bin/switch-to-configuration"
chmod 0755 "$sys/bin/switch-to-configuration"
`

// writeGuardStubs writes the guard's stubs beside the others.
func (l *Lab) writeGuardStubs(head string) {
	if strings.ContainsAny(l.Dir, "|'\"\\\n") {
		l.t.Fatalf("sshlab: the lab directory %q holds characters lab-mksystem cannot substitute", l.Dir)
	}
	for name, text := range map[string]string{
		"systemd-run":                head + stubSystemdRun,
		"lab-mksystem":               head + stubMksystem,
		"switch-to-configuration.in": stubSwitch,
	} {
		if err := os.WriteFile(filepath.Join(l.StubDir, name), []byte(text), 0o755); err != nil {
			l.t.Fatal(err)
		}
	}
	for _, d := range []string{"units", "gcroots", "profiles", "built"} {
		if err := os.MkdirAll(filepath.Join(l.Dir, d), 0o755); err != nil {
			l.t.Fatal(err)
		}
	}
	l.t.Cleanup(l.stopTimers)
}

// stopTimers kills the detached timers a test left armed, so no process
// outlives the lab.
func (l *Lab) stopTimers() {
	files, _ := filepath.Glob(filepath.Join(l.Dir, "units", "*", "*.pgid"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if pg, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pg > 1 {
			syscall.Kill(-pg, syscall.SIGKILL)
		}
	}
}

// GuardRoot is the directory the deployer's rollback guard keeps its link
// in on the lab's targets (deployer.Options.GuardRoot).
func (l *Lab) GuardRoot() string { return filepath.Join(l.Dir, "gcroots") }

// BootDefault is host's system profile: what it boots next ("" when no
// switch or boot set it since the lab started, which means the initial
// system).
func (l *Lab) BootDefault(host string) string {
	p, err := os.Readlink(filepath.Join(l.Dir, "profiles", host))
	if err != nil {
		return ""
	}
	return p
}

// TimerArmed reports whether unit's timer is loaded on host and has not
// elapsed.
func (l *Lab) TimerArmed(host, unit string) bool {
	b, err := os.ReadFile(filepath.Join(l.Dir, "units", host, unit+".timer"))
	return err == nil && strings.TrimSpace(string(b)) == "pending"
}

// TimerLoaded reports whether unit's timer is loaded on host at all.
func (l *Lab) TimerLoaded(host, unit string) bool {
	_, err := os.Stat(filepath.Join(l.Dir, "units", host, unit+".timer"))
	return err == nil
}

// mkSystem makes a lab system for host at dir with lab-mksystem.
func (l *Lab) mkSystem(host, dir string) {
	out, err := execCommand(filepath.Join(l.StubDir, "lab-mksystem"), host, dir)
	if err != nil {
		l.t.Fatalf("sshlab: lab-mksystem: %v: %s", err, out)
	}
}

func execCommand(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}
