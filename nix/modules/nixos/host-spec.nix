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

    sshPort = lib.mkOption {
      type = lib.types.port;
      default = 22;
      description = ''
        The port sshd listens on after the install (services.openssh.ports).
        Set from hosts/fleet.nix (sshPort) by both flakes; it must equal the
        host's port in nixdeploy.toml, which the Go tests and
        `nixdeploy check` compare.
      '';
    };

    initrdSsh = lib.mkOption {
      default = null;
      description = ''
        An SSH server in the initrd that unlocks the LUKS root remotely
        (modules/nixos/initrd-ssh.nix). null: the passphrase is typed at the
        console. Set from hosts/fleet.nix (initrdSsh) by both flakes, so the
        system nixos-anywhere installs can already be unlocked remotely.
      '';
      type = lib.types.nullOr (
        lib.types.submodule {
          options = {
            port = lib.mkOption {
              type = lib.types.port;
              default = 2222;
              description = "Port of the initrd's sshd; must differ from hostSpec.sshPort.";
            };
            hostKeyPath = lib.mkOption {
              type = lib.types.str;
              default = "/etc/secrets/initrd/ssh_host_ed25519_key";
              description = ''
                The pre-generated initrd host key on the target (a string, not
                a Nix path, so it never enters the world-readable store). The
                install puts keys/<host>_initrd_ssh_host_ed25519_key there
                through --extra-files; the bot pins its public half.
              '';
            };
            kernelModules = lib.mkOption {
              type = lib.types.listOf lib.types.str;
              description = ''
                The NIC driver(s) the initrd loads, from `lspci -k` on the
                running system ("Kernel driver in use").
              '';
            };
            network = lib.mkOption {
              default = "dhcp";
              description = ''"dhcp", or a static address for the initrd.'';
              type = lib.types.either (lib.types.enum [ "dhcp" ]) (
                lib.types.submodule {
                  options = {
                    address = lib.mkOption { type = lib.types.str; };
                    netmask = lib.mkOption { type = lib.types.str; };
                    gateway = lib.mkOption { type = lib.types.str; };
                    interface = lib.mkOption { type = lib.types.str; };
                  };
                }
              );
            };
          };
        }
      );
    };

    hashedPasswordFromSops = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = ''
        Give hostSpec.user the password hash stored as <user>-password in
        nix-secrets/secrets.yaml (modules/nixos/sops.nix), so the first
        console or display-manager login and sudo work. Without it the user
        has no password: SSH keys only, no sudo.
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
      assertion = config.hostSpec.initrdSsh == null || config.hostSpec.initrdSsh.port != config.hostSpec.sshPort;
      message = "hostSpec.initrdSsh.port must differ from hostSpec.sshPort: the initrd and the system have different host keys";
    }
    {
      # Password logins are off everywhere, so an empty list would lock
      # everyone out of a freshly installed machine. Fail evaluation instead.
      assertion = config.hostSpec.authorizedKeys != [ ];
      message = "hostSpec.authorizedKeys is empty: add your SSH public key to hosts/common/authorized-keys.nix";
    }
  ];
}
