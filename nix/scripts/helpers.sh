# shellcheck shell=bash
# Helpers for bootstrap-nixos.sh. Sourced, never run.

# Colours only on a terminal, so logs and test output stay plain.
if [[ -t 2 ]]; then
	_c_info=$'\e[1;32m' _c_err=$'\e[1;31m' _c_off=$'\e[0m'
else
	_c_info='' _c_err='' _c_off=''
fi

log() { printf '%s==> %s%s\n' "$_c_info" "$*" "$_c_off" >&2; }

die() {
	printf '%serror: %s%s\n' "$_c_err" "$*" "$_c_off" >&2
	exit 1
}

# valid_host NAME: the names nixdeploy accepts, so a host name can never turn
# into a path outside the keys directory or an option.
valid_host() { [[ $1 =~ ^[a-z0-9][a-z0-9-]{0,62}$ ]]; }

valid_port() { [[ $1 =~ ^[0-9]{1,5}$ ]] && ((10#$1 >= 1 && 10#$1 <= 65535)); }

# valid_dest ADDR: an address or host name; nothing ssh could read as an
# option or a user@ prefix.
valid_dest() { [[ $1 =~ ^[A-Za-z0-9][A-Za-z0-9.:-]*$ ]]; }

# check_host_key PRIV: the pre-generated pair must exist, be private (OpenSSH
# refuses a group- or world-readable key) and its halves must match. This is
# the key preflight: better to stop here than after disko wiped the disk.
check_host_key() {
	local priv=$1 pub=$1.pub mode derived stored
	[[ -f $priv ]] || die "host key $priv not found (run: nixdeploy keys init)"
	[[ -f $pub ]] || die "public host key $pub not found (run: nixdeploy keys init)"
	mode=$(stat -c '%a' "$priv")
	[[ $mode == 600 || $mode == 400 ]] || die "host key $priv has mode $mode; run: chmod 600 $priv"
	derived=$(ssh-keygen -y -f "$priv" | awk '{print $1, $2}') ||
		die "cannot read host key $priv (is it an unencrypted OpenSSH key?)"
	stored=$(awk '{print $1, $2}' "$pub")
	[[ $derived == "$stored" ]] || die "host key $priv does not match $pub"
	[[ $stored == ssh-ed25519\ * ]] || die "host key $pub is not ed25519"
}

# wait_for_ssh TIMEOUT CMD…: retry CMD (an ssh invocation ending in `true`)
# until it succeeds or TIMEOUT seconds pass. nixos-anywhere returns as soon as
# it triggers the reboot, so the new system may take minutes to come up.
wait_for_ssh() {
	local timeout=$1 err
	shift
	local deadline=$((SECONDS + timeout))
	until err=$("$@" 2>&1 >/dev/null); do
		if ((SECONDS >= deadline)); then
			printf '%s\n' "$err" >&2
			return 1
		fi
		sleep 5
	done
}

# host_facts FLEET_NIX HOST NIX_INSTANTIATE…: prints "sshPort diskKeyFile
# initrdPort initrdHostKeyPath" for HOST of hosts/fleet.nix, "-" for what the
# host does not have. Every value is checked, so nothing from the file
# reaches a command line unvalidated.
host_facts() {
	local fleet=$1 host=$2 out ssh_port disk_key_file initrd_port initrd_key_path
	shift 2
	# shellcheck disable=SC2016 # ${…} here is Nix, not shell
	out=$("$@" --eval --strict --argstr fleet "$fleet" --argstr host "$host" --expr '
		{ fleet, host }:
		let
		  all = import fleet;
		  h = all.${host} or (throw "host ${host} is not in hosts/fleet.nix");
		  i = h.initrdSsh;
		in
		builtins.concatStringsSep " " [
		  (toString h.sshPort)
		  (if h.diskKeyFile == null then "-" else h.diskKeyFile)
		  (if i == null then "-" else toString i.port)
		  (if i == null then "-" else i.hostKeyPath)
		]') || return 1
	out=${out#\"}
	out=${out%\"}
	read -r ssh_port disk_key_file initrd_port initrd_key_path <<<"$out"
	valid_port "$ssh_port" || die "hosts/fleet.nix: $host: bad sshPort '$ssh_port'"
	[[ $disk_key_file == - ]] || valid_remote_path "$disk_key_file" ||
		die "hosts/fleet.nix: $host: bad diskKeyFile '$disk_key_file'"
	if [[ $initrd_port != - ]]; then
		valid_port "$initrd_port" || die "hosts/fleet.nix: $host: bad initrdSsh.port '$initrd_port'"
		valid_remote_path "$initrd_key_path" ||
			die "hosts/fleet.nix: $host: bad initrdSsh.hostKeyPath '$initrd_key_path'"
		[[ $disk_key_file != - ]] || die "hosts/fleet.nix: $host: initrdSsh without diskKeyFile"
	fi
	printf '%s %s %s %s\n' "$ssh_port" "$disk_key_file" "$initrd_port" "$initrd_key_path"
}

# valid_remote_path PATH: absolute, no .. and nothing a shell or the
# extra-files tree could misread.
valid_remote_path() { [[ $1 =~ ^(/[A-Za-z0-9._-]+)+$ && ! $1 =~ /\.\.?(/|$) ]]; }

# check_disk_key HOST FILE: the LUKS passphrase must be there before disko
# wipes the disk (cryptsetup would stop with "Nothing to read on input."
# after sgdisk --zap-all), private, and without a trailing newline, or the
# passphrase typed at the console would not match.
check_disk_key() {
	local host=$1 key=$2 mode
	[[ -f $key ]] || die "$host encrypts its disk, but $key is missing (run: nixdeploy keys init, or nixdeploy keys unseal --out DIR HOST and -K DIR)"
	mode=$(stat -c '%a' "$key")
	[[ $mode == 600 || $mode == 400 ]] || die "disk key $key has mode $mode; run: chmod 600 $key"
	[[ -s $key ]] || die "disk key $key is empty"
	[[ $(tail -c 1 "$key" | od -An -tx1 | tr -d ' ') != 0a ]] ||
		die "disk key $key ends with a newline; write it with printf '%s' (or nixdeploy keys disk-key set $host)"
}

# install_private ROOT PATH FILE: FILE at ROOT/PATH with mode 0600. New
# directories below etc/ are 0700 (only root reads /etc/secrets); etc itself
# stays 0755, because nixos-anywhere copies modes onto the target's /etc.
install_private() {
	local root=$1 rel=${2#/} file=$3 dir='' part
	local -a parts
	IFS=/ read -r -a parts <<<"$(dirname "$rel")"
	for part in "${parts[@]}"; do
		dir=${dir:+$dir/}$part
		if [[ ! -d $root/$dir ]]; then
			if [[ $dir == etc ]]; then install -d -m 755 "$root/$dir"; else install -d -m 700 "$root/$dir"; fi
		fi
	done
	install -m 600 "$file" "$root/$rel"
}

# unlock_luks KEYFILE CMD…: sends the passphrase to cryptsetup-askpass in
# the initrd (scripted stage 1, nixpkgs nixos/modules/system/boot/luksroot.nix):
# it reads one line with `IFS= read -rs`, so the passphrase goes with a
# newline, and it dies "End of file reached" when asked again, which means
# the passphrase was wrong. Its exit status says nothing (it also exits 1
# after a success, "Passphrase is not requested now"): the pinned host key of
# the booted system is the proof.
unlock_luks() {
	local key=$1 out
	shift
	out=$({
		cat -- "$key"
		printf '\n'
	} | "$@" cryptsetup-askpass 2>&1) || true
	if [[ $out == *'End of file reached'* ]]; then
		die "the initrd did not accept the disk passphrase (wrong key in the key store?)"
	fi
}
