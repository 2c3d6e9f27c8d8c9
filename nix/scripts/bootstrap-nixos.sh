#!/usr/bin/env bash
# Manual fallback for `/nixdeploy install HOST`: installs one host with
# nixos-anywhere, then switches it to its full configuration. It runs the same
# steps, in the same order, as the bot's install plan in deployer/ (see
# DESIGN.md, "Plans"):
#
#   1. key preflight     from KEYS_DIR (plaintext, e.g. `nixdeploy keys unseal`):
#                        <host>_ssh_host_ed25519_key(.pub) exist, 0600, match;
#                        <host>_disk_key for a LUKS host (diskKeyFile in
#                        hosts/fleet.nix), <host>_initrd_ssh_host_ed25519_key(.pub)
#                        for a host with initrd SSH; refused before anything runs
#   2. temp dir          <tmp>/extra-files/etc/ssh/ssh_host_ed25519_key (0600) + .pub
#                        (0644), the initrd key at its hostKeyPath (0600, new
#                        directories under etc/ 0700), <tmp>/disk.key (0600)
#   3. nixos-anywhere    --extra-files <tmp>/extra-files
#                        [--disk-encryption-keys <diskKeyFile> <tmp>/disk.key]
#                        --flake ./nixos-installer#<host> root@<dest>
#   4. unlock            LUKS hosts with initrd SSH: the passphrase to
#                        cryptsetup-askpass on the initrd's port, pinned key
#   5. remove temp       always, also on failure (trap)
#   6. wait for SSH      the target must present its pre-generated host key
#   7. nixos-rebuild     switch --flake .#<host> --target-host root@<dest>
#   8. verify            /run/current-system and systemctl is-system-running
#
# Keep the two in step: a change to one is a change to both.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=helpers.sh
source "$script_dir/helpers.sh"

usage() {
	cat <<USAGE
usage: bootstrap-nixos.sh -n HOST -d DEST -k KEY [-p PORT] [-b] [-K KEYS_DIR]

Installs HOST with nixos-anywhere (this WIPES the disk named in hosts/fleet.nix),
unlocks its disk over the initrd SSH server where it has one, then runs
nixos-rebuild switch with its full configuration.

  -n HOST      host name in hosts/fleet.nix (e.g. ganon, rk1-node1)
  -d DEST      address of the target, reachable as root over SSH
  -k KEY       your SSH private key, authorised for root on the target
  -p PORT      SSH port of the system being replaced, for nixos-anywhere
               (default: the host's sshPort in hosts/fleet.nix, which is
               also where the installed system answers)
  -b           build on the target (aarch64 hosts: no emulation on the runner)
  -K KEYS_DIR  the plaintext key store (default: <flake>/keys): the
               \`nixdeploy keys unseal --out DIR HOST\` output, or the [keys] dir when
               nothing is sealed. It must hold HOST_ssh_host_ed25519_key(.pub),
               HOST_disk_key for a LUKS host (no trailing newline), and
               HOST_initrd_ssh_host_ed25519_key(.pub) for initrd SSH.
  -h           show this help

Environment: NIXOS_ANYWHERE (default "nix run github:nix-community/nixos-anywhere --"),
NIXOS_REBUILD (default "nixos-rebuild"), SSH (default "ssh"),
NIX_INSTANTIATE (default "nix-instantiate"), FLAKE_DIR (default: the directory
above scripts/), SSH_WAIT_TIMEOUT (seconds, default 900).
USAGE
}

usage_error() {
	printf 'error: %s\n\n' "$*" >&2
	usage >&2
	exit 2
}

flake_dir=${FLAKE_DIR:-$(cd "$script_dir/.." && pwd)}
host='' dest='' identity='' port='' build_on_target=false keys_dir=''

while getopts ':n:d:k:p:bK:h' opt; do
	case $opt in
	n) host=$OPTARG ;;
	d) dest=$OPTARG ;;
	k) identity=$OPTARG ;;
	p) port=$OPTARG ;;
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
[[ -z $port ]] || valid_port "$port" || usage_error "bad port '$port'"
keys_dir=${keys_dir:-$flake_dir/keys}

read -r -a nix_instantiate <<<"${NIX_INSTANTIATE:-nix-instantiate}"
read -r -a nixos_anywhere <<<"${NIXOS_ANYWHERE:-nix run github:nix-community/nixos-anywhere --}"
read -r -a nixos_rebuild <<<"${NIXOS_REBUILD:-nixos-rebuild}"
read -r -a ssh_cmd <<<"${SSH:-ssh}"

# 0. What hosts/fleet.nix says about the host: the same table both flakes
# build from, so the script cannot disagree with the installed system.
read -r ssh_port disk_key_file initrd_port initrd_key_path < <(host_facts "$flake_dir/hosts/fleet.nix" "$host" "${nix_instantiate[@]}") ||
	die "cannot read $host from $flake_dir/hosts/fleet.nix"
port=${port:-$ssh_port}

# 1. Key preflight: everything that can be checked before the disk is wiped.
[[ -r $identity ]] || die "SSH key $identity not readable"
host_key=$keys_dir/${host}_ssh_host_ed25519_key
check_host_key "$host_key"
disk_key=''
if [[ $disk_key_file != - ]]; then
	disk_key=$keys_dir/${host}_disk_key
	check_disk_key "$host" "$disk_key"
fi
initrd_key=''
if [[ $initrd_port != - ]]; then
	initrd_key=$keys_dir/${host}_initrd_ssh_host_ed25519_key
	check_host_key "$initrd_key"
	[[ $(awk '{print $2}' "$initrd_key.pub") != "$(awk '{print $2}' "$host_key.pub")" ]] ||
		die "$initrd_key is the main host key; the initrd needs its own (it lies unencrypted on the boot partition)"
fi

work='' known_hosts=''
cleanup() {
	[[ -z $work ]] || rm -rf -- "$work"
	[[ -z $known_hosts ]] || rm -f -- "$known_hosts"
}
trap cleanup EXIT

# Pins the pre-generated keys for every later ssh; nixos-anywhere itself
# ignores host keys, so this is what proves the installed system booted.
# The initrd's key has an alias of its own: it is a different key.
known_hosts=$(mktemp)
printf 'nixdeploy-%s %s\n' "$host" "$(awk '{print $1, $2}' "$host_key.pub")" >"$known_hosts"
if [[ -n $initrd_key ]]; then
	printf 'nixdeploy-%s-initrd %s\n' "$host" "$(awk '{print $1, $2}' "$initrd_key.pub")" >>"$known_hosts"
fi
pinned_opts=(-i "$identity"
	-o "UserKnownHostsFile=$known_hosts"
	-o GlobalKnownHostsFile=/dev/null
	-o StrictHostKeyChecking=yes
	-o ConnectTimeout=10
	-o BatchMode=yes)
ssh_opts=("${pinned_opts[@]}" -p "$ssh_port" -o "HostKeyAlias=nixdeploy-$host")

# 2. The keys, laid out as they must appear under / on the target, and the
# disk passphrase beside them: the bot's temp dir has the same shape.
work=$(mktemp -d)
extra_files=$work/extra-files
# nixos-anywhere copies the tree's root as well: a 0700 dir would become a
# 0700 / on the target.
install -d -m 755 "$extra_files" "$extra_files/etc" "$extra_files/etc/ssh"
install -m 600 "$host_key" "$extra_files/etc/ssh/ssh_host_ed25519_key"
install -m 644 "$host_key.pub" "$extra_files/etc/ssh/ssh_host_ed25519_key.pub"
if [[ -n $initrd_key ]]; then
	install_private "$extra_files" "$initrd_key_path" "$initrd_key"
fi
if [[ -n $disk_key ]]; then
	install -m 600 "$disk_key" "$work/disk.key"
fi

# 3. Install. The host goes last, once: nixos-anywhere takes an unknown
# argument as the host if none is set yet.
anywhere_args=(--ssh-port "$port" -i "$identity" --extra-files "$extra_files")
if [[ -n $disk_key ]]; then
	anywhere_args+=(--disk-encryption-keys "$disk_key_file" "$work/disk.key")
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

# 4. The installed system waits in its initrd for the disk passphrase.
if [[ -n $initrd_key ]]; then
	initrd_opts=("${pinned_opts[@]}" -p "$initrd_port" -o "HostKeyAlias=nixdeploy-$host-initrd")
	log "waiting for $host's initrd SSH server on port $initrd_port"
	wait_for_ssh "${SSH_WAIT_TIMEOUT:-900}" "${ssh_cmd[@]}" "${initrd_opts[@]}" "root@$dest" true ||
		die "$host's initrd did not answer on $dest:$initrd_port with its pre-generated initrd key"
	log "unlocking $host's disk"
	unlock_luks "$work/disk.key" "${ssh_cmd[@]}" "${initrd_opts[@]}" "root@$dest"
fi

# 5. The private key copies are not needed any more; the trap covers failures.
rm -rf -- "$work"
work=''

# 6. The installed system must answer with the pinned key.
log "waiting for $host to come back with its pre-generated host key"
wait_for_ssh "${SSH_WAIT_TIMEOUT:-900}" "${ssh_cmd[@]}" "${ssh_opts[@]}" "root@$dest" true ||
	die "$host did not come back on $dest:$ssh_port with its pre-generated host key"

# 7. Full configuration.
export NIX_SSHOPTS="${ssh_opts[*]}"
rebuild_args=(switch --flake "$flake_dir#$host" --target-host "root@$dest")
if $build_on_target; then
	rebuild_args+=(--build-host "root@$dest")
fi
log "switching $host to its full configuration"
"${nixos_rebuild[@]}" "${rebuild_args[@]}" || die "nixos-rebuild switch failed for $host"

# 8. Verify: an exit code alone is not proof the system is healthy.
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
