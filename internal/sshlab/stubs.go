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
	if _f=$(knob cat); then
		# stamp: when the printing starts, in ns (bench row 1 times the
		# stream from here, past the hop to the target before it).
		if knob stamp >/dev/null; then date +%s%N >"$C/$TOOL.$ATTR.catstart"; fi
		cat "$_f"
	fi
	if knob hang >/dev/null; then
		sleep 3600 &
		echo $! >"$C/$TOOL.$ATTR.childpid"
		echo $$ >"$C/$TOOL.$ATTR.pid"
		wait
		# A test ends the hang by killing the child; hang-exit is the
		# status the stub then ends with (default 1).
		if _v=$(knob hang-exit); then printf '%s\n' "after the hang"; exit "$_v"; fi
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

// stubAnywhere parses its arguments as nixos-anywhere 1.13's parseArgs
// does (src/nixos-anywhere.sh at 91fc9b7): each known flag with its arity,
// the first other word as the host and a second one refused with the
// usage. It then plays the install against the lab: its first contact is
// ssh with StrictHostKeyChecking=no as nixos-anywhere's own (sshArgs), so
// only the forwarded agent can log it in; disk keys are "uploaded" into a
// scratch root (runDisko: umask 077; cat > PATH), the extra files are
// copied with the same tar pipe into <scratch>/mnt and their modes checked,
// and a LUKS layout (control file disko.<attr>.luks holding the
// passwordFile, as nix/hosts/common/disks/*.nix) without that key fails as
// disko's luksFormat does: cryptsetup says "Nothing to read on input.".
const stubAnywhere = `TOOL=nixos-anywhere
log_call nixos-anywhere "$@"
abort() { printf 'BAD %s %s: %s\n' "$TOOL" "${LAB_HOST:-?}" "$*" >>"$LAB/calls.log"; echo "aborted: $*" >&2; exit 1; }
usage() { echo "Usage: nixos-anywhere [options] [<ssh-host>]"; }
flake= host= extra= port=22 phases=kexec,disko,install,reboot buildon=auto kexec= kexecflags=
dek=
while [ $# -gt 0 ]; do
	case $1 in
	-f|--flake) flake=$2; shift;;
	--target-host) host=$2; shift;;
	-i) shift;;
	-p|--ssh-port) port=$2; shift;;
	--ssh-option) shift;;
	-L|--print-build-logs|--copy-host-keys|--show-trace|--debug|--no-disko-deps|--no-substitute-on-destination|--no-use-machine-substituters|--env-password|--vm-test|-t|--tty) ;;
	-s|--store-paths) shift 2;;
	--generate-hardware-config)
		[ $# -ge 3 ] || abort "Missing arguments for --generate-hardware-config <backend> <path>"
		case $2 in nixos-facter|nixos-generate-config) ;; *) abort "Unknown hardware config backend: $2";; esac
		shift 2;;
	--help) usage; exit 0;;
	--kexec) kexec=$2; shift;;
	--force-kexec) shift;;
	--kexec-extra-flags) kexecflags=$2; shift;;
	--ssh-store-setting) shift 2;;
	--post-kexec-ssh-port) shift;;
	--disko-mode)
		case $2 in format|mount|disko) ;; *) abort "Supported values for --disko-mode are disko, mount and format. Unknown mode : $2";; esac
		shift;;
	--build-on)
		case $2 in auto|local|remote) buildon=$2;; *) abort "Supported values for --build-on are auto, local and remote. Unknown mode : $2";; esac
		shift;;
	--extra-files) extra=$2; shift;;
	--chown) shift 2;;
	--disk-encryption-keys) dek="$dek
$2 $3"; shift 2;;
	--phases)
		phases=$2
		for ph in $(printf '%s' "$2" | tr , ' '); do
			case $ph in kexec|disko|install|reboot) ;; *) abort "Unknown phase: $ph";; esac
		done
		shift;;
	--from) shift;;
	--option) shift 2;;
	--build-on-remote) buildon=remote;;
	*)
		if [ -z "$host" ]; then host=$1; else printf 'BAD %s %s: second host %s\n' "$TOOL" "${LAB_HOST:-?}" "$1" >>"$LAB/calls.log"; usage; exit 1; fi;;
	esac
	shift
done
[ -n "$host" ] || abort "ssh-host must be set"
case $flake in
*#*) ATTR=${flake##*#};;
*) ATTR=;;
esac
if [ -z "$ATTR" ]; then
	echo "Please specify the name of the NixOS configuration to be installed, as a URI fragment in the flake-uri." >&2
	echo 'For example, to use the output nixosConfigurations.foo from the flake.nix, append "#foo" to the flake-uri.' >&2
	exit 1
fi
case $port in ''|*[!0-9]*) bad "--ssh-port value $port is not a number";; esac
has() { case ",$phases," in *",$1,"*) return 0;; esac; return 1; }

echo "### Uploading install SSH keys ###"
# nixos-anywhere's own ssh: no host key checking; only the agent can log in.
if ! ssh -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o LogLevel=ERROR -p "$port" "$host" true </dev/null; then
	exit 255
fi
root=$C/root.$ATTR
rm -rf "$root"; mkdir -p "$root/mnt"
printf '%s\n' "$port" >"$C/nixos-anywhere.$ATTR.port"
[ -z "$extra" ] || printf '%s\n' "$extra" >"$C/nixos-anywhere.$ATTR.extra-files"
printf '%s\n' "$phases" >"$C/nixos-anywhere.$ATTR.phases"
printf '%s\n' "$buildon" >"$C/nixos-anywhere.$ATTR.build-on"
printf '%s\n' "$kexecflags" >"$C/nixos-anywhere.$ATTR.kexec-extra-flags"
if has kexec; then
	echo "### Gathering machine facts ###"
	echo "### Switching system into kexec ###"
	echo "machine will boot into nixos in 6s..."
	echo "### Waiting for the machine to become unreachable due to reboot ###"
fi
if has disko; then
	printf '%s\n' "$dek" | while read -r rpath lpath; do
		[ -n "$rpath" ] || continue
		echo "### Uploading $lpath to $rpath ###"
		mkdir -p "$root$(dirname "$rpath")"
		( umask 077; cat >"$root$rpath" ) <"$lpath" || exit 1
	done || exit 1
	echo "### Formatting hard drive with disko ###"
	echo "+ sgdisk --zap-all /dev/vda"
	if pw=$(cat "$C/disko.$ATTR.luks" 2>/dev/null); then
		if [ ! -s "$root$pw" ]; then
			echo "+ cryptsetup -q luksFormat /dev/disk/by-partlabel/disk-main-luks --key-file $pw" >&2
			echo "Nothing to read on input." >&2
			exit 1
		fi
		echo "+ cryptsetup -q luksFormat /dev/disk/by-partlabel/disk-main-luks --key-file $pw"
	fi
fi
behave
if has install; then
	if [ -n "$extra" ]; then
		echo "### Copying extra files ###"
		tar -C "$extra" -cpf- . | tar -C "$root/mnt" -xf- --no-same-owner || exit 1
		x=$root/mnt
		mode() { stat -c %a "$1" 2>/dev/null || echo missing; }
		[ "$(mode "$x/etc")" = 755 ] || bad "etc has mode $(mode "$x/etc"), want 755"
		[ "$(mode "$x/etc/ssh")" = 755 ] || bad "etc/ssh has mode $(mode "$x/etc/ssh"), want 755"
		k=$x/etc/ssh/ssh_host_ed25519_key
		[ "$(mode "$k")" = 600 ] || bad "host key has mode $(mode "$k"), want 600"
		[ "$(mode "$k.pub")" = 644 ] || bad "host key .pub has mode $(mode "$k.pub"), want 644"
		want=$(cut -d' ' -f1,2 "$LAB/keys/${ATTR}_ssh_host_ed25519_key.pub")
		got=$(ssh-keygen -y -f "$k" | cut -d' ' -f1,2)
		[ -n "$want" ] && [ "$got" = "$want" ] || bad "the host key in extra-files is not the pinned key of $ATTR"
		[ "$(cut -d' ' -f1,2 "$k.pub")" = "$want" ] || bad "the .pub in extra-files is not the pinned key of $ATTR"
		if ip=$(cat "$C/initrd.$ATTR.path" 2>/dev/null); then
			[ "$(mode "$x$ip")" = 600 ] || bad "initrd host key $ip has mode $(mode "$x$ip"), want 600"
		fi
		# The tree's own modes land on the target (the tar pipe keeps them):
		# /, /etc and /etc/ssh must stay world-readable (755); a directory
		# that holds only root's secrets, such as /etc/secrets/initrd, 700.
		for f in $(find "$x" -type d); do
			case ${f#$x} in
			''|/etc|/etc/ssh) want=755;;
			*) want=700;;
			esac
			[ "$(mode "$f")" = $want ] || bad "directory ${f#$x} has mode $(mode "$f"), want $want"
		done
	fi
	echo "### Uploading the system closure ###"
	echo "copying 1 paths..."
	echo "### Installing NixOS ###"
	echo "installing the boot loader..."
	echo "installation finished!"
fi
if has reboot; then
	echo "### Rebooting ###"
fi
echo "### Done! ###"
`

// stubRebuild parses its arguments as nixos-rebuild-ng's argparse does for
// the flags the bot uses (unknown ones refused with argparse's message),
// then reaches the target (and build host) as nixos-rebuild-ng does
// (nixos_rebuild/process.py: ssh *shlex.split(NIX_SSHOPTS) host -- cmd):
// with real OpenSSH, only NIX_SSHOPTS and SSH_AUTH_SOCK, from a runner
// whose ~/.ssh is empty. A missing pin, a wrong pin or a missing key fails
// there as it would in life. sh splits NIX_SSHOPTS like shlex only for words
// without quotes or backslashes; others are refused.
const stubRebuild = `TOOL=nixos-rebuild
log_call nixos-rebuild "$@"
die() {
	printf 'BAD %s %s: %s\n' "$TOOL" "${LAB_HOST:-?}" "$*" >>"$LAB/calls.log"
	echo "usage: nixos-rebuild [--verbose] [--flake FLAKE] ... {switch,boot,test,build,dry-build,dry-activate,...}" >&2
	echo "nixos-rebuild: error: $*" >&2
	exit 2
}
action= rollback= flake= target= buildhost=
while [ $# -gt 0 ]; do
	case $1 in
	switch|boot|test|dry-activate|dry-build|build) [ -z "$action" ] || die "unrecognized arguments: $1"; action=$1;;
	--rollback) rollback=1;;
	--fast|--no-reexec) ;;
	--flake) [ $# -ge 2 ] || die "argument --flake: expected one argument"; flake=$2; shift;;
	--target-host) [ $# -ge 2 ] || die "argument --target-host: expected one argument"; target=$2; shift;;
	--build-host) [ $# -ge 2 ] || die "argument --build-host: expected one argument"; buildhost=$2; shift;;
	*) die "unrecognized arguments: $1";;
	esac
	shift
done
[ -n "$action" ] || die "the following arguments are required: action"
ATTR=${flake##*#}
case $flake in *#?*) ;; *) bad "--flake $flake has no #attribute";; esac
[ -n "$target" ] || bad "no --target-host"
if o=$(knob sshopts); then
	tmp=${NIX_SSHOPTS#*UserKnownHostsFile=}; tmp=${tmp%%/known_hosts*}
	if [ "$o" = - ]; then unset NIX_SSHOPTS; else NIX_SSHOPTS=$(printf '%s' "$o" | sed "s|@tmp@|$tmp|g"); fi
fi
if knob noagent >/dev/null; then unset SSH_AUTH_SOCK; fi
case ${NIX_SSHOPTS:-} in *[\'\"\\\\]*) bad "NIX_SSHOPTS needs shlex quoting, which the lab's sh splitting does not model: $NIX_SSHOPTS";; esac
remote() {
	# shellcheck disable=SC2086
	ssh ${NIX_SSHOPTS:-} "$1" -- readlink /run/current-system </dev/null >/dev/null
}
if [ -n "$buildhost" ]; then
	remote "$buildhost" || exit 1
fi
remote "$target" || exit 1

echo "building the system configuration..." >&2
behave
if [ "$action" = dry-build ] || [ "$action" = build ]; then exit 0; fi
case $action in
switch|test)
	if ! knob nochange >/dev/null; then
		new=$(mktemp -d "$LAB/store/nixos-system-$ATTR-XXXXXXXX")
		"$LAB/bin/lab-mksystem" "$ATTR" "$new"
		# breakssh: the new system's sshd refuses the bot's key.
		if knob breakssh >/dev/null; then rm -f "$new/authorized_keys"; fi
		ln -sfn "$new" "$LAB/systems/$ATTR.tmp"
		mv -T "$LAB/systems/$ATTR.tmp" "$LAB/systems/$ATTR"
	fi
	# What was built for the host, which a later boot makes the boot
	# default; switch makes it that now.
	ln -sfn "$(readlink "$LAB/systems/$ATTR")" "$LAB/built/$ATTR"
	if [ "$action" = switch ]; then ln -sfn "$(readlink "$LAB/built/$ATTR")" "$LAB/profiles/$ATTR"; fi
	echo "activating the configuration..." >&2
	# dropped: the activation cut the network, and with it nixos-rebuild's
	# own ssh to the target (OpenSSH exits 255).
	if knob dropped >/dev/null; then echo "Connection to ${target#*@} closed by remote host." >&2; exit 255; fi
	echo "setting up /etc..." >&2
	echo "reloading user units for root..." >&2
	echo "restarting sysinit-reactivation.target" >&2
	[ -n "$rollback" ] && echo "switching to the previous generation" >&2
	;;
boot)
	# boot sets the system profile to what it built and installs the
	# boot loader (nixos-rebuild-ng services.py, _activate_system); the
	# running system stays.
	if [ -e "$LAB/built/$ATTR" ]; then built=$(readlink "$LAB/built/$ATTR"); else built=$(readlink "$LAB/systems/$ATTR"); fi
	ln -sfn "$built" "$LAB/profiles/$ATTR"
	echo "updating GRUB 2 menu..." >&2
	;;
dry-activate)
	echo "would restart the following units: nix-daemon.service" >&2
	;;
esac
exit 0
`

// stubNix answers the three questions the deployer asks the runner's nix,
// and nothing else ("is not a recognised command", "unrecognised flag", as
// nix says): flake metadata --json (the fields Nix documents in
// nix3-flake-metadata(1)), the eval of an installer's disko disks and the
// drift board's eval of the hosts' systems (nix eval [option...]
// installable, with --json and --apply, as nix eval --help has them). The
// revision comes from the control file nix.revision, a disk from
// disko.<attr>.device (default /dev/vda), a host's system from
// nix.<attr>.toplevel (default <lab>/store/nixos-system-<attr>-<rev>);
// nix.<attr>.eval-error makes its configuration fail to evaluate and
// nix.<attr>.missing leaves it out of the flake.
const stubNix = `TOOL=nix
log_call nix "$@"
while [ "${1:-}" = --extra-experimental-features ]; do shift 2; done
case ${1:-} in
flake)
	[ "${2:-}" = metadata ] || { echo "error: 'flake ${2:-}' is not a recognised command" >&2; exit 1; }
	shift 2
	[ "${1:-}" = --json ] || { echo "error: unrecognised flag '${1:-}'" >&2; exit 1; }
	[ $# -eq 2 ] || { echo "error: unexpected arguments" >&2; exit 1; }
	f=$2
	rev=$(cat "$C/nix.revision" 2>/dev/null) || rev=0123456789abcdef0123456789abcdef01234567
	printf '{"description":"lab flake","lastModified":1700000000,"locked":{"rev":"%s","type":"git","url":"file://%s"},"original":{"type":"git","url":"file://%s"},"path":"/nix/store/lab-source","revision":"%s","url":"git+file://%s?rev=%s"}\n' "$rev" "$f" "$f" "$rev" "$f" "$rev"
	;;
eval)
	# nix eval [option...] installable (nix eval --help): flags and the
	# one installable in any order.
	shift
	json= apply= inst= applied=
	while [ $# -gt 0 ]; do
		case $1 in
		--json) json=1;;
		--raw|--read-only) ;;
		--apply) [ $# -ge 2 ] || { echo "error: flag '--apply' requires 1 argument(s)" >&2; exit 1; }; apply=$2; applied=1; shift;;
		-*) echo "error: unrecognised flag '$1'" >&2; exit 1;;
		*) [ -z "$inst" ] || { echo "error: unexpected argument '$1'" >&2; exit 1; }; inst=$1;;
		esac
		shift
	done
	[ -n "$inst" ] || { echo "error: no installable given" >&2; exit 1; }
	case $inst in
	*'#nixosConfigurations.'*.config.disko.devices.disk)
		[ -n "$json" ] && [ "$apply" = "builtins.mapAttrs (n: d: d.device)" ] || { echo "error: unexpected arguments" >&2; exit 1; }
		ATTR=${inst#*#nixosConfigurations.}; ATTR=${ATTR%.config.disko.devices.disk}
		dev=$(cat "$C/disko.$ATTR.device" 2>/dev/null) || dev=/dev/vda
		printf '{"main":"%s"}\n' "$dev"
		;;
	*'#nixosConfigurations')
		# The drift board's question (deployer.ToplevelsArgv): each named
		# configuration's system.build.toplevel.outPath, as JSON. Without
		# --json nix would print a Nix value, which the deployer cannot
		# read; without --apply it would try to print every configuration.
		[ -n "$json" ] && [ -n "$applied" ] || bad "toplevels eval without --json and --apply"
		case $apply in
		'cs: builtins.mapAttrs (n: c: c.config.system.build.toplevel.outPath) (builtins.intersectAttrs {'*' } cs)') ;;
		*) bad "unexpected --apply $apply";;
		esac
		case $inst in *'?rev='*) rev=${inst##*rev=}; rev=${rev%%[&#]*};; *) bad "toplevels eval of an unlocked flake $inst";; esac
		names=$(printf '%s' "$apply" | grep -o '"[^"]*" = null;' | cut -d'"' -f2)
		out= sep=
		for ATTR in $names; do
			if msg=$(knob eval-error); then
				echo "error: $msg" >&2
				echo "       … while evaluating the attribute 'nixosConfigurations.$ATTR.config.system.build.toplevel'" >&2
				exit 1
			fi
			knob missing >/dev/null && continue
			p=$(knob toplevel) || p="$LAB/store/nixos-system-$ATTR-$rev"
			out="$out$sep\"$ATTR\":\"$p\""
			sep=,
		done
		printf '{%s}\n' "$out"
		;;
	*)
		echo "error: flake does not provide attribute '${inst#*#}'" >&2
		exit 1
		;;
	esac
	;;
*)
	echo "error: '${1:-}' is not a recognised command" >&2
	exit 1
	;;
esac
`

// stubSSH is OpenSSH itself with the lab's empty home: ssh takes ~ from
// the passwd entry, not $HOME, so -F names the lab home's config, which
// points known_hosts and the identity at that empty home. Options given on
// the command line (NIX_SSHOPTS) still win, as with any ssh config file.
const stubSSH = `exec @SSH@ -F "$LAB/home/.ssh/config" "$@"
`

// stubAskpass stands in for cryptsetup-askpass in an initrd. Its rules are
// those of nixpkgs nixos/modules/system/boot/luksroot.nix (askPass, the
// scripted stage 1): it prompts, reads one line with IFS= read -rs (a
// passphrase without its newline hits end of file and the script dies with
// "End of file reached. Exiting shell."), hands it on, and then finds no
// passphrase requested and exits 1. A control file "askpass-reject.HOST"
// (HOST is the initrd sshd's LAB_HOST, "<host>-initrd") makes the initrd
// ask again, as after a wrong passphrase.
const stubAskpass = `TOOL=cryptsetup-askpass
log_call cryptsetup-askpass "$@"
[ $# -eq 0 ] || bad "cryptsetup-askpass takes no arguments"
printf 'Passphrase for /dev/disk/by-partlabel/disk-main-luks: '
IFS= read -r pass || { echo 'End of file reached. Exiting shell.' >&2; exit 1; }
printf '%s\n' "$pass" >>"$C/unlocked.$LAB_HOST"
if [ -f "$C/askpass-reject.$LAB_HOST" ]; then
	printf 'Passphrase for /dev/disk/by-partlabel/disk-main-luks: '
	IFS= read -r pass || { echo 'End of file reached. Exiting shell.' >&2; exit 1; }
fi
echo 'Passphrase is not requested now' >&2
exit 1
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
is-active|stop)
	systemctl_guard "$@"
	;;
esac
bad "unexpected arguments: $*"
`

// The deployer reads /run/current-system and /run/booted-system; the lab
// keeps one symlink per host for each instead, chosen by the LAB_HOST each
// sshd sets. A missing link fails silently with status 1, as coreutils
// readlink does without -v.
const stubReadlink = `if [ $# -eq 1 ]; then
	case $1 in
	/run/current-system|/run/booted-system)
		TOOL=readlink
		log_call readlink "$@"
		dir=systems
		[ "$1" = /run/booted-system ] && dir=booted
		exec @READLINK@ "$LAB/$dir/$LAB_HOST"
		;;
	esac
fi
exec @READLINK@ "$@"
`

func (l *Lab) writeStubs() {
	head := "#!/bin/sh\n# Stub written by internal/sshlab.\nLAB=" + shq(l.Dir) + "\nC=" + shq(l.ControlDir) + "\n. \"$LAB/bin/stublib.sh\"\n"
	files := map[string]string{
		"stublib.sh":         stubLib + stubGuardLib,
		"nixos-anywhere":     head + stubAnywhere,
		"nixos-rebuild":      head + stubRebuild,
		"nix":                head + stubNix,
		"cryptsetup-askpass": head + stubAskpass,
		"ssh":                head + strings.ReplaceAll(stubSSH, "@SSH@", shq(l.ssh)),
		"systemctl":          head + stubSystemctl,
		"readlink":           head + strings.ReplaceAll(stubReadlink, "@READLINK@", shq(l.readlink)),
	}
	l.writeGuardStubs(head)
	home := filepath.Join(l.Dir, "home", ".ssh")
	if err := os.MkdirAll(home, 0o700); err != nil {
		l.t.Fatal(err)
	}
	sshConfig := "# The lab runner's empty ~/.ssh (written by internal/sshlab)\nUserKnownHostsFile " + filepath.Join(home, "known_hosts") +
		"\nIdentityFile " + filepath.Join(home, "id_ed25519") + "\n"
	if err := os.WriteFile(filepath.Join(home, "config"), []byte(sshConfig), 0o600); err != nil {
		l.t.Fatal(err)
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(l.StubDir, name), []byte(text), 0o755); err != nil {
			l.t.Fatal(err)
		}
	}
}

// shq single-quotes s for sh.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
