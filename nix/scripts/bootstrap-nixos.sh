#!/usr/bin/env bash
# Manual fallback for `/nixdeploy install HOST`: installs one host with
# nixos-anywhere, then switches it to its full configuration. It runs the same
# steps, in the same order, as the bot's install plan in deployer/ (see
# DESIGN.md, "Plans"):
#
#   1. key preflight     keys/<host>_ssh_host_ed25519_key(.pub) exist, 0600, match
#   2. temp extra-files  <tmp>/etc/ssh/ssh_host_ed25519_key (0600) + .pub (0644)
#   3. nixos-anywhere    --flake ./nixos-installer#<host> root@<dest>
#   4. remove temp       always, also on failure (trap)
#   5. wait for SSH      the target must present its pre-generated host key
#   6. nixos-rebuild     switch --flake .#<host> --target-host root@<dest>
#   7. verify            /run/current-system and systemctl is-system-running
#
# Keep the two in step: a change to one is a change to both.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=helpers.sh
source "$script_dir/helpers.sh"

usage() {
	cat <<USAGE
usage: bootstrap-nixos.sh -n HOST -d DEST -k KEY [-p PORT] [-e LUKS_KEY] [-b] [-K KEYS_DIR]

Installs HOST with nixos-anywhere (this WIPES the disk named in hosts/fleet.nix),
then runs nixos-rebuild switch with its full configuration.

  -n HOST      host name in flake.nix / nixos-installer (e.g. ganon, rk1-node1)
  -d DEST      address of the target, reachable as root over SSH
  -k KEY       your SSH private key, authorised for root on the target
  -p PORT      SSH port (default 22)
  -e LUKS_KEY  local file with the disk passphrase, uploaded as /tmp/secret.key
               for disko (ganon; no trailing newline)
  -b           build on the target (aarch64 hosts: no emulation on the runner)
  -K KEYS_DIR  pre-generated host keys (default: <flake>/keys)
  -h           show this help

Environment: NIXOS_ANYWHERE (default "nix run github:nix-community/nixos-anywhere --"),
NIXOS_REBUILD (default "nixos-rebuild"), SSH (default "ssh"),
FLAKE_DIR (default: the directory above scripts/), SSH_WAIT_TIMEOUT (seconds, default 900).
USAGE
}

usage_error() {
	printf 'error: %s\n\n' "$*" >&2
	usage >&2
	exit 2
}

flake_dir=${FLAKE_DIR:-$(cd "$script_dir/.." && pwd)}
host='' dest='' identity='' port=22 luks_key='' build_on_target=false keys_dir=''

while getopts ':n:d:k:p:e:bK:h' opt; do
	case $opt in
	n) host=$OPTARG ;;
	d) dest=$OPTARG ;;
	k) identity=$OPTARG ;;
	p) port=$OPTARG ;;
	e) luks_key=$OPTARG ;;
	b) build_on_target=true ;;
	K) keys_dir=$OPTARG ;;
	h)
		usage
		exit 0
		;;
	:) usage_error "-$OPTARG needs a value" ;;
	*) usage_error "unknown flag -$OPTARG" ;;
	esac
done
shift $((OPTIND - 1))
(($# == 0)) || usage_error "unexpected argument: $1"

[[ -n $host ]] || usage_error "missing -n HOST"
[[ -n $dest ]] || usage_error "missing -d DEST"
[[ -n $identity ]] || usage_error "missing -k KEY"
valid_host "$host" || usage_error "bad host name '$host' (lower-case letters, digits, dashes)"
valid_dest "$dest" || usage_error "bad destination '$dest' (an address or host name, without user@)"
valid_port "$port" || usage_error "bad port '$port'"
keys_dir=${keys_dir:-$flake_dir/keys}

read -r -a nixos_anywhere <<<"${NIXOS_ANYWHERE:-nix run github:nix-community/nixos-anywhere --}"
read -r -a nixos_rebuild <<<"${NIXOS_REBUILD:-nixos-rebuild}"
read -r -a ssh_cmd <<<"${SSH:-ssh}"

# 1. Key preflight: everything that can be checked before the disk is wiped.
[[ -r $identity ]] || die "SSH key $identity not readable"
[[ -z $luks_key || -r $luks_key ]] || die "disk passphrase file $luks_key not readable"
host_key=$keys_dir/${host}_ssh_host_ed25519_key
check_host_key "$host_key"

extra_files='' known_hosts=''
cleanup() {
	[[ -z $extra_files ]] || rm -rf -- "$extra_files"
	[[ -z $known_hosts ]] || rm -f -- "$known_hosts"
}
trap cleanup EXIT

# Pins the pre-generated key for every later ssh; nixos-anywhere itself
# ignores host keys, so this is what proves the installed system booted.
known_hosts=$(mktemp)
printf 'nixdeploy-%s %s\n' "$host" "$(awk '{print $1, $2}' "$host_key.pub")" >"$known_hosts"
ssh_opts=(-i "$identity" -p "$port"
	-o "HostKeyAlias=nixdeploy-$host"
	-o "UserKnownHostsFile=$known_hosts"
	-o StrictHostKeyChecking=yes
	-o ConnectTimeout=10
	-o BatchMode=yes)

# 2. The host key, laid out as it must appear under / on the target.
extra_files=$(mktemp -d)
# nixos-anywhere copies the tree's root as well: a 0700 mktemp dir would
# become a 0700 / on the target.
chmod 755 "$extra_files"
install -d -m 755 "$extra_files/etc" "$extra_files/etc/ssh"
install -m 600 "$host_key" "$extra_files/etc/ssh/ssh_host_ed25519_key"
install -m 644 "$host_key.pub" "$extra_files/etc/ssh/ssh_host_ed25519_key.pub"

# 3. Install. The host goes last, once: nixos-anywhere takes an unknown
# argument as the host if none is set yet.
anywhere_args=(--ssh-port "$port" -i "$identity" --extra-files "$extra_files")
if [[ -n $luks_key ]]; then
	anywhere_args+=(--disk-encryption-keys /tmp/secret.key "$luks_key")
fi
if $build_on_target; then
	anywhere_args+=(--build-on remote)
fi
anywhere_args+=(--flake "$flake_dir/nixos-installer#$host" "root@$dest")

log "installing $host on $dest with nixos-anywhere (this wipes its disk)"
# SHELL=/bin/sh: nixos-anywhere runs remote commands through $SHELL, which
# breaks when the operator's login shell is fish or nushell.
SHELL=/bin/sh "${nixos_anywhere[@]}" "${anywhere_args[@]}" ||
	die "nixos-anywhere failed for $host; nothing was rebuilt"

# 4. The private key copy is not needed any more; the trap covers failures.
rm -rf -- "$extra_files"
extra_files=''

# 5. The installed system must answer with the pinned key.
log "waiting for $host to come back with its pre-generated host key"
wait_for_ssh "${SSH_WAIT_TIMEOUT:-900}" "${ssh_cmd[@]}" "${ssh_opts[@]}" "root@$dest" true ||
	die "$host did not come back on $dest:$port with its pre-generated host key"

# 6. Full configuration.
export NIX_SSHOPTS="${ssh_opts[*]}"
rebuild_args=(switch --flake "$flake_dir#$host" --target-host "root@$dest")
if $build_on_target; then
	rebuild_args+=(--build-host "root@$dest")
fi
log "switching $host to its full configuration"
"${nixos_rebuild[@]}" "${rebuild_args[@]}" || die "nixos-rebuild switch failed for $host"

# 7. Verify: an exit code alone is not proof the system is healthy.
state=$("${ssh_cmd[@]}" "${ssh_opts[@]}" "root@$dest" \
	'readlink /run/current-system; systemctl is-system-running || true') ||
	die "cannot verify $host over SSH"
current=$(head -n 1 <<<"$state")
status=$(tail -n 1 <<<"$state")
log "$host runs $current ($status)"
if [[ $status != running ]]; then
	"${ssh_cmd[@]}" "${ssh_opts[@]}" "root@$dest" 'systemctl --failed --no-legend' >&2 || true
	die "$host is $status, not running"
fi
log "$host installed"
