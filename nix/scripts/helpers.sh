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
