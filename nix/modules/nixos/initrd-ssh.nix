# Remote LUKS unlock: an SSH server in the initrd (hostSpec.initrdSsh, set
# from hosts/fleet.nix). Imported by the full configuration (common.nix) and
# by the installer (minimal-configuration.nix), because the first boot after
# nixos-anywhere is the installer's system and it must already be unlockable.
#
# The bot (or you) unlock with, see nix/README.md "Remote unlock":
#   printf '%s\n' "$passphrase" | ssh -p 2222 root@ganon cryptsetup-askpass
#
# Scripted stage 1 on purpose: its cryptsetup-askpass reads the passphrase
# from stdin (nixpkgs nixos/modules/system/boot/luksroot.nix, askPass), so it
# works without a terminal. The systemd stage 1 asks through
# systemd-tty-ask-password-agent, which needs a tty.
{ config, lib, ... }:
let
  cfg = config.hostSpec.initrdSsh;
  static = cfg.network != "dhcp";
in
{
  config = lib.mkIf (cfg != null) {
    assertions = [
      {
        assertion = !config.boot.initrd.systemd.enable;
        message = "hostSpec.initrdSsh relies on cryptsetup-askpass of the scripted stage 1; boot.initrd.systemd.enable must stay false";
      }
    ];

    # The NIC driver, found with `lspci -k` on the running system.
    boot.initrd.availableKernelModules = cfg.kernelModules;
    boot.initrd.kernelModules = cfg.kernelModules;

    boot.initrd.network = {
      enable = true;
      # DHCP on every interface in stage 1 (udhcpc), independent of the
      # stage-2 networking (NetworkManager on ganon).
      udhcpc.enable = !static;
      ssh = {
        enable = true;
        port = cfg.port;
        # The admin keys and the bot's key: the same list as root's.
        authorizedKeys = config.hostSpec.authorizedKeys;
        # A string, never a Nix path: the key is copied into the initrd by
        # boot.initrd.secrets at bootloader install time and never enters
        # the world-readable store.
        hostKeys = [ cfg.hostKeyPath ];
      };
    };

    # Static address through the kernel's ip= syntax, which stage 1 feeds
    # to ipconfig: ip=<client>::<gateway>:<netmask>:<hostname>:<device>:off
    boot.kernelParams = lib.optional static (
      "ip=${cfg.network.address}::${cfg.network.gateway}:${cfg.network.netmask}:"
      + "${config.networking.hostName}:${cfg.network.interface}:off"
    );
  };
}
