package deployer

import (
	"strconv"
	"time"
)

// SupervisorScript runs a long step on the runner so that it outlives the
// bot's SSH connection, and the bot itself (issue 14). It is POSIX sh and
// needs nothing beyond coreutils (timeout, dd, cat, ln, mv, rm, and sleep
// with a fraction); the deployer sends it like every remote script
// (remoteScript), so any login shell passes it on unchanged, and runs it
// with sh -c on a local runner.
//
// Modes (sh -c SCRIPT nixdeploy-supervisor MODE DIR NAME ARGS…), with F
// standing for DIR/NAME:
//
//   - start SECONDS KILLSECONDS AGENT ARGV…: starts the supervisor, detached
//     from the session (a double fork: it is nobody's child but init's),
//     which runs ARGV under timeout(1) with output to F.out and F.err.
//     timeout makes its own process group (coreutils timeout.c:
//     setpgid(0, 0) unless --foreground), which is the step's group:
//     cancel kills it and the supervisor survives to clean up; timeout
//     also enforces the step's timeout on the runner when no bot is
//     watching. When the step ends, for whatever reason short of SIGKILL of
//     the supervisor itself, it removes the run's key material (extra-files,
//     disk.key) and only then writes the exit status to F.status, so a
//     status means the keys are gone. The status is "N\n", written by the
//     shell's echo in one write(2) and without a rename (a mv is a fork and
//     an exec at every step's end): every reader takes F.status as written
//     only when it is not empty (test -s), and a file's size grows only
//     once the written bytes are in it. With AGENT=1 the step's SSH_AUTH_SOCK
//     is DIR/agent.sock, a symlink to this session's forwarded agent.
//     The supervisor is started from a command substitution's subshell,
//     which exits at once, and hands the step's group back through its
//     pipe: the substitution ends when the supervisor has said it and let
//     go of the pipe, so the start waits for nothing but the forks. start
//     then prints "nixdeploy-pgid N" on stderr and follows from 0, without
//     follow's re-pointing of the link it has just made (an ln and a mv
//     more, which ran beside the step's own start).
//   - follow OUT ERR: re-points DIR/agent.sock at this session's forwarded
//     agent (when it is a symlink and this session has one), then streams
//     F.out from byte OUT to stdout and F.err from byte ERR to stderr until
//     the status is written and both are read to their end, and exits with
//     the step's status. It seeks once (dd skip with count=0 on an open
//     descriptor) and then, in turns, copies what is new on each stream
//     with dd, at most 64 MiB a turn, so a long burst on one stream holds
//     the other back for a moment at most. dd is as fast as cat. Whether a
//     turn brought anything, and whether it reached both files' ends, is
//     read from the descriptors' offsets in /proc/$$/fdinfo (the shell's
//     descriptors share them with dd), with the shell's read: no other
//     process, and no file written in the run directory, which a follow
//     left behind by a lost session would otherwise race with the removal
//     of the directory. Without /proc the follow still works: it pauses
//     after every turn and ends with a copy to the files' ends. A turn that
//     brought something is followed at once by the next; a stream that has
//     printed nothing yet costs no dd at all (test -s), so waiting for a
//     step's first output costs a sleep a turn; a quiet turn is followed by a
//     pause that grows with the quiet: 0.02 s for the first 0.1 s, 0.05 s up
//     to about 2 s, then 0.2 s. A fork is the cost that counts here (about
//     8 ms of CPU on the test machine's VM, where the earlier fixed 0.05 s
//     pause with three forks a turn kept a third of a CPU busy while a step
//     was quiet); an hour-long quiet build now costs 15 forks a second. The
//     turn that began with the status written and reached both ends is the
//     last. The end is the status file, not the supervisor's process: an
//     exited supervisor stays a zombie until init reaps it, which took over
//     a second on the test machine, and kill -0 sees a zombie. A dd that
//     cannot write (the bot went away) ends it. When the supervisor is gone
//     with no status written (SIGKILLed, the runner rebooted), or the step's
//     files are not there at all, it kills itself with SIGUSR1: no step
//     status is a signal, so the bot tells the two apart.
//   - probe: prints "ended N" (the status file), "live" (the supervisor
//     runs) or "gone" (neither), for the sweep.
//   - cancel TICKS: SIGTERM to the step's group, SIGKILL after TICKS tenths
//     of a second, then waits for the supervisor's status (its cleanup);
//     prints "gone" or "alive".
const SupervisorScript = `set -u
m=$1 d=$2 n=$3
shift 3
f=$d/$n
follow() {
	if [ ! -f "$f.out" ] || [ ! -f "$f.err" ]; then
		kill -USR1 $$
		exit 125
	fi
	p=
	if [ ! -s "$f.status" ]; then
		read -r p <"$f.pid" || exit 125
	fi
	exec 3<"$f.out" 4<"$f.err"
	if [ "$1" != 0 ]; then dd bs=1 skip="$1" count=0 <&3 2>/dev/null || exit 125; fi
	if [ "$2" != 0 ]; then dd bs=1 skip="$2" count=0 <&4 2>/dev/null || exit 125; fi
	o=$1 r=$2 k=0
	while :; do
		e=0
		if [ -s "$f.status" ]; then e=1; fi
		if [ "$o" != 0 ] || [ -s "$f.out" ]; then
			dd bs=128k count=512 status=none <&3 2>/dev/null || exit 125
		fi
		if [ "$r" != 0 ] || [ -s "$f.err" ]; then
			dd bs=128k count=512 status=none <&4 >&2 2>/dev/null || exit 125
		fi
		a=0 t=0
		if read -r _ po <"/proc/$$/fdinfo/3" && read -r _ pr <"/proc/$$/fdinfo/4"; then
			t=1
			if [ "$po" != "$o" ] || [ "$pr" != "$r" ]; then a=1; fi
			if [ $((po - o)) -ge 67108864 ] || [ $((pr - r)) -ge 67108864 ]; then t=0; fi
			o=$po r=$pr
		fi
		if [ "$e" = 1 ]; then
			if [ "$t" = 0 ]; then
				cat <&3 2>/dev/null || exit 125
				cat <&4 >&2 2>/dev/null || exit 125
			fi
			read -r rc <"$f.status"
			exit "$rc"
		fi
		if [ "$a" = 1 ]; then
			k=0
			continue
		fi
		if ! kill -0 "$p" 2>/dev/null && [ ! -s "$f.status" ]; then
			kill -USR1 $$
			exit 125
		fi
		k=$((k + 1))
		if [ "$k" -le 5 ]; then
			sleep 0.02
		elif [ "$k" -le 40 ]; then
			sleep 0.05
		else
			sleep 0.2
		fi
	done
}
keys() {
	if [ -e "$d/extra-files" ] || [ -e "$d/disk.key" ]; then
		rm -rf -- "$d/extra-files" "$d/disk.key"
	fi
}
supervise() {
	trap '' HUP INT QUIT PIPE
	trap keys EXIT
	trap 'kill -TERM -"$pg" 2>/dev/null' TERM
	if [ "$ag" = 1 ]; then
		SSH_AUTH_SOCK=$d/agent.sock
		export SSH_AUTH_SOCK
	fi
	timeout -k "$kg" "$to" "$@" </dev/null >>"$f.out" 2>>"$f.err" &
	pg=$!
	echo "$pg" >"$f.pgid"
	echo "$pg"
	exec >/dev/null
	while :; do
		wait "$pg"
		rc=$?
		if [ "$rc" -gt 128 ] && kill -0 "$pg" 2>/dev/null; then continue; fi
		break
	done
	keys
	echo "$rc" >"$f.status"
}
case $m in
start)
	to=$1 kg=$2 ag=$3
	shift 3
	umask 077
	{ : >"$f.out" && : >"$f.err"; } || exit 125
	if [ "$ag" = 1 ] && [ -n "${SSH_AUTH_SOCK:-}" ] && [ "$SSH_AUTH_SOCK" != "$d/agent.sock" ]; then
		ln -sfn "$SSH_AUTH_SOCK" "$d/agent.sock" || exit 125
	fi
	pg=$(supervise "$@" </dev/null 2>/dev/null & echo "$!" >"$f.pid")
	[ -n "$pg" ] || exit 125
	echo "nixdeploy-pgid $pg" >&2
	follow 0 0
	;;
follow)
	if [ -n "${SSH_AUTH_SOCK:-}" ] && [ -L "$d/agent.sock" ] && [ "$SSH_AUTH_SOCK" != "$d/agent.sock" ]; then
		ln -sfn "$SSH_AUTH_SOCK" "$d/agent.sock.new" && mv -fT "$d/agent.sock.new" "$d/agent.sock"
	fi
	follow "$1" "$2"
	;;
cancel)
	k=$1
	if [ -s "$f.status" ] || ! read -r pg <"$f.pgid"; then echo gone; exit 0; fi
	kill -TERM -"$pg" 2>/dev/null
	i=0
	while kill -0 -"$pg" 2>/dev/null; do
		i=$((i + 1))
		[ "$i" -eq "$k" ] && kill -KILL -"$pg" 2>/dev/null
		if [ "$i" -ge $((k * 2)) ]; then echo alive; exit 1; fi
		sleep 0.1
	done
	i=0
	until [ -s "$f.status" ]; do
		i=$((i + 1))
		if [ "$i" -ge 50 ]; then
			keys
			break
		fi
		sleep 0.1
	done
	echo gone
	;;
probe)
	if [ -s "$f.status" ]; then
		read -r rc <"$f.status"
		echo "ended $rc"
	elif read -r p <"$f.pid" 2>/dev/null && kill -0 "$p" 2>/dev/null; then
		echo live
	else
		echo gone
	fi
	;;
*)
	echo "nixdeploy-supervisor: unknown mode $m" >&2
	exit 125
	;;
esac`

// supervisorArgv is the argv that runs the supervisor in mode.
func supervisorArgv(mode, dir, name string, args ...string) []string {
	return append([]string{"sh", "-c", SupervisorScript, "nixdeploy-supervisor", mode, dir, name}, args...)
}

// seconds is d rounded up to whole seconds, as timeout(1) takes it.
func seconds(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10) + "s"
}
