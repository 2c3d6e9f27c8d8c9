# The operator keys that may log in as root (nixos-anywhere, nixos-rebuild
# --target-host, the nixdeploy bot) and as hostSpec.user. Both the full
# configurations and the installer import this file, so a freshly installed
# machine accepts exactly the keys a rebuild will.
#
# Until you add a key here, evaluation fails on purpose (see
# modules/nixos/host-spec.nix): password logins are disabled everywhere.
{
  hostSpec.authorizedKeys = [
    # "ssh-ed25519 AAAA... michael@laptop"
  ];
}
