# Options every host (and the installer) shares. They live in their own file
# so the minimal installer can declare them without pulling in common.nix.
{ config, lib, ... }:
{
  options.hostSpec = {
    isMinimal = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = ''
        Lightweight system: no documentation, only the essential tools.
        The RK1 nodes and the installer set it; ganon does not.
      '';
    };

    user = lib.mkOption {
      type = lib.types.str;
      default = "michael";
      description = ''
        The login that owns the per-host user age key. It must match
        [secrets] user in nixdeploy.toml, because the secret is named
        user-age-keys/<user>-<hostname>.
      '';
    };

    authorizedKeys = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      description = ''
        SSH public keys allowed to log in as root and as hostSpec.user.
        Set once, in hosts/common/authorized-keys.nix.
      '';
    };
  };

  config.assertions = [
    {
      # Password logins are off everywhere, so an empty list would lock
      # everyone out of a freshly installed machine. Fail evaluation instead.
      assertion = config.hostSpec.authorizedKeys != [ ];
      message = "hostSpec.authorizedKeys is empty: add your SSH public key to hosts/common/authorized-keys.nix";
    }
  ];
}
