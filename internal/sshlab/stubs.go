package sshlab

import (
	"os"
	"path/filepath"
	"strings"
)

// stubLib is sourced by every stub. LAB and C (the control dir) are set by
// the stub's first lines.
const stubLib = `
# log_call TOOL ARGS...: one line per invocation, arguments bracketed so
# their boundaries show.
log_call() {
	_tool=$1; shift
	_line="$_tool ${LAB_HOST:-?}"
	for _a in "$@"; do _line="$_line [$_a]"; done
	[ -n "${NIX_SSHOPTS:-}" ] && _line="$_line {NIX_SSHOPTS=$NIX_SSHOPTS}"
	printf '%s\n' "$_line" >>"$LAB/calls.log"
}

# bad MSG: the stub was called wrongly.
bad() {
	printf 'stub %s: %s\n' "$TOOL" "$*" >&2
	printf 'BAD %s %s: %s\n' "$TOOL" "${LAB_HOST:-?}" "$*" >>"$LAB/calls.log"
	exit 97
}

# knob NAME: the control value for this tool and host, else for this tool.
knob() {
	if [ -n "${ATTR:-}" ] && [ -f "$C/$TOOL.$ATTR.$1" ]; then cat "$C/$TOOL.$ATTR.$1"; return 0; fi
	if [ -f "$C/$TOOL.$1" ]; then cat "$C/$TOOL.$1"; return 0; fi
	return 1
}

# behave: take a while, print, print many lines, hang or fail as the
# control files say.
behave() {
	if _s=$(knob sleep); then sleep "$_s"; fi
	if _v=$(knob print); then printf '%s\n' "$_v"; fi
	if _v=$(knob print-stderr); then printf '%s\n' "$_v" >&2; fi
	if _n=$(knob lines); then seq -f "line %.0f of $_n" 1 "$_n"; fi
	if _f=$(knob cat); then cat "$_f"; fi
	if knob hang >/dev/null; then
		sleep 3600 &
		echo $! >"$C/$TOOL.$ATTR.childpid"
		echo $$ >"$C/$TOOL.$ATTR.pid"
		wait
		exit 1
	fi
	if _code=$(knob exit); then
		echo "error: $TOOL stub told to fail with status $_code" >&2
		[ "$TOOL" = nixos-anywhere ] && echo "aborted: stub failure" >&2
		exit "$_code"
	fi
	return 0
}
`

const stubAnywhere = `TOOL=nixos-anywhere
log_call nixos-anywhere "$@"
# The bot's contract: --ssh-port P --extra-files DIR --flake URI#ATTR root@HOST,
# in this order, the host last and once.
[ $# -eq 7 ] || bad "want 7 arguments, got $#"
[ "$1" = --ssh-port ] || bad "argument 1 is $1, want --ssh-port"
case $2 in ''|*[!0-9]*) bad "--ssh-port value $2 is not a number";; esac
[ "$3" = --extra-files ] || bad "argument 3 is $3, want --extra-files"
[ "$5" = --flake ] || bad "argument 5 is $5, want --flake"
ATTR=${6#*#}
case $6 in *#*) ;; *) bad "--flake $6 has no #attribute";; esac
[ -n "$ATTR" ] || bad "--flake $6 has an empty attribute"
case $7 in root@?*) ;; *) bad "last argument $7 is not root@host";; esac
n=0
for a in "$@"; do case $a in *@*) n=$((n+1));; esac; done
[ $n -eq 1 ] || bad "the host appears $n times"

x=$4
mode() { stat -c %a "$1" 2>/dev/null || echo missing; }
[ "$(mode "$x")" = 755 ] || bad "extra-files dir has mode $(mode "$x"), want 755"
[ "$(mode "$x/etc")" = 755 ] || bad "etc has mode $(mode "$x/etc"), want 755"
[ "$(mode "$x/etc/ssh")" = 755 ] || bad "etc/ssh has mode $(mode "$x/etc/ssh"), want 755"
k=$x/etc/ssh/ssh_host_ed25519_key
[ "$(mode "$k")" = 600 ] || bad "host key has mode $(mode "$k"), want 600"
[ "$(mode "$k.pub")" = 644 ] || bad "host key .pub has mode $(mode "$k.pub"), want 644"
want=$(cut -d' ' -f1,2 "$LAB/keys/${ATTR}_ssh_host_ed25519_key.pub")
got=$(ssh-keygen -y -f "$k" | cut -d' ' -f1,2)
[ -n "$want" ] && [ "$got" = "$want" ] || bad "the host key in extra-files is not the pinned key of $ATTR"
[ "$(cut -d' ' -f1,2 "$k.pub")" = "$want" ] || bad "the .pub in extra-files is not the pinned key of $ATTR"
echo "$x" >"$C/nixos-anywhere.$ATTR.extra-files"

echo "### Uploading install SSH keys ###"
echo "Warning: Permanently added '${7#root@}' (ED25519) to the list of known hosts." >&2
echo "/nix/store/abc-ssh-copy-id/bin/ssh-copy-id: INFO: 1 key(s) remain to be installed"
echo "### Gathering machine facts ###"
echo "### Switching system into kexec ###"
echo "machine will boot into nixos in 6s..."
echo "### Waiting for the machine to become unreachable due to reboot ###"
echo "### Formatting hard drive with disko ###"
echo "+ sgdisk --zap-all /dev/vda"
behave
echo "### Uploading the system closure ###"
echo "copying 1 paths..."
echo "### Installing NixOS ###"
echo "installing the boot loader..."
echo "setting up /etc..."
echo "installation finished!"
echo "### Rebooting ###"
echo "### Done! ###"
`

const stubRebuild = `TOOL=nixos-rebuild
log_call nixos-rebuild "$@"
[ $# -ge 1 ] || bad "no action"
action=$1; shift
case $action in switch|boot|test|dry-activate|dry-build|build) ;; *) bad "unknown action $action";; esac
rollback=
if [ "${1:-}" = --rollback ]; then rollback=1; shift; fi
[ "${1:-}" = --flake ] || bad "want --flake, got ${1:-nothing}"
ATTR=${2#*#}
case ${2:-} in *#?*) ;; *) bad "--flake ${2:-} has no #attribute";; esac
shift 2
[ "${1:-}" = --target-host ] || bad "want --target-host, got ${1:-nothing}"
target=${2:-}
case $target in root@?*) ;; *) bad "--target-host $target is not root@host";; esac
shift 2
if [ $# -gt 0 ]; then
	[ $# -eq 2 ] && [ "$1" = --build-host ] && [ "$2" = "$target" ] || bad "unexpected trailing arguments: $*"
fi

echo "building the system configuration..." >&2
behave
if [ "$action" = dry-build ] || [ "$action" = build ]; then exit 0; fi
case $action in
switch|test)
	if ! knob nochange >/dev/null; then
		new=$(mktemp -d "$LAB/store/nixos-system-$ATTR-XXXXXXXX")
		ln -sfn "$new" "$LAB/systems/$ATTR.tmp"
		mv -T "$LAB/systems/$ATTR.tmp" "$LAB/systems/$ATTR"
	fi
	echo "activating the configuration..." >&2
	echo "setting up /etc..." >&2
	echo "reloading user units for root..." >&2
	echo "restarting sysinit-reactivation.target" >&2
	[ -n "$rollback" ] && echo "switching to the previous generation" >&2
	;;
boot)
	echo "updating GRUB 2 menu..." >&2
	;;
dry-activate)
	echo "would restart the following units: nix-daemon.service" >&2
	;;
esac
exit 0
`

const stubSystemctl = `TOOL=systemctl
ATTR=${LAB_HOST:-}
log_call systemctl "$@"
case ${1:-} in
is-system-running)
	st=$(knob state) || st=running
	echo "$st"
	[ "$st" = running ]
	exit
	;;
--failed)
	knob failed || true
	exit 0
	;;
esac
bad "unexpected arguments: $*"
`

// The deployer reads /run/current-system; the lab keeps one symlink per host
// instead, chosen by the LAB_HOST each sshd sets.
const stubReadlink = `if [ $# -eq 1 ] && [ "$1" = /run/current-system ]; then
	TOOL=readlink
	log_call readlink "$@"
	exec @READLINK@ "$LAB/systems/$LAB_HOST"
fi
exec @READLINK@ "$@"
`

func (l *Lab) writeStubs() {
	head := "#!/bin/sh\n# Stub written by internal/sshlab.\nLAB=" + shq(l.Dir) + "\nC=" + shq(l.ControlDir) + "\n. \"$LAB/bin/stublib.sh\"\n"
	files := map[string]string{
		"stublib.sh":     stubLib,
		"nixos-anywhere": head + stubAnywhere,
		"nixos-rebuild":  head + stubRebuild,
		"systemctl":      head + stubSystemctl,
		"readlink":       head + strings.ReplaceAll(stubReadlink, "@READLINK@", shq(l.readlink)),
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(l.StubDir, name), []byte(text), 0o755); err != nil {
			l.t.Fatal(err)
		}
	}
}

// shq single-quotes s for sh.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
