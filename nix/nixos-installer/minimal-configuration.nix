# What nixos-anywhere installs: enough to boot, unlock the disk, get an
# address and accept the operator's SSH key with the pre-generated host key.
# Everything else arrives with the first `nixos-rebuild switch --flake .#host`.
{ config, lib, ... }:
{
  # The initrd SSH server comes with the installed system: the first boot
  # after nixos-anywhere already waits for a LUKS passphrase.
  imports = [ ../modules/nixos/initrd-ssh.nix ];

  hostSpec.isMinimal = true;

  services.openssh = {
    enable = true;
    openFirewall = true;
    # From hosts/fleet.nix, like the full configuration: the bot waits for
    # this port after the install's reboot.
    ports = [ config.hostSpec.sshPort ];
    # The key nixos-anywhere copied in with --extra-files: the one the bot
    # pins, so the first boot already presents it.
    hostKeys = [
      {
        path = "/etc/ssh/ssh_host_ed25519_key";
        type = "ed25519";
      }
    ];
    settings = {
      PasswordAuthentication = false;
      KbdInteractiveAuthentication = false;
      PermitRootLogin = "prohibit-password";
    };
  };

  users.users.root = {
    hashedPassword = "!";
    openssh.authorizedKeys.keys = config.hostSpec.authorizedKeys;
  };

  networking.useDHCP = lib.mkDefault true;

  nix.settings = {
    experimental-features = [
      "nix-command"
      "flakes"
    ];
    trusted-users = [ "root" ];
  };

  documentation.enable = false;

  system.stateVersion = lib.mkDefault "25.11";
}
