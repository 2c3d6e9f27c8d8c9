# Everything the four RK1 nodes share. A node's own configuration.nix only
# imports this file and sets networking.hostName.
{
  config,
  lib,
  ...
}:
let
  fleet = import ../fleet.nix;
in
{
  imports = [
    ../../modules/nixos/common.nix
    ../../modules/nixos/sops.nix
    ./rk1-hardware.nix
  ];

  hostSpec.isMinimal = true;

  # eMMC wear: the root fs is mounted noatime,commit=60 (disks/rk1-emmc.nix);
  # trim weekly instead of on every delete; keep the journal small; swap to
  # compressed RAM, never to flash.
  services.fstrim.enable = true;
  services.journald.extraConfig = ''
    SystemMaxUse=64M
    SystemMaxFileSize=8M
    RuntimeMaxUse=32M
  '';
  zramSwap = {
    enable = true;
    memoryPercent = 50;
  };
  # nixos-rebuild builds on the node (build_on_target in nixdeploy.toml):
  # a full store fills 32 GB of eMMC quickly.
  nix.gc.options = lib.mkForce "--delete-older-than 7d";
  nix.settings.min-free = 2 * 1024 * 1024 * 1024;

  # Cluster networking. The Turing Pi 2 board switches all four nodes onto
  # one LAN port; addresses come from DHCP (reserve them on the router, to
  # match hosts/fleet.nix). The nodes resolve each other and ganon through
  # /etc/hosts, so the cluster keeps working when LAN DNS does not.
  networking.useNetworkd = true;
  networking.useDHCP = true;
  networking.hosts = lib.mapAttrs' (name: host: lib.nameValuePair host.address [ name ]) fleet;

  assertions = [
    {
      # A hostname outside fleet.nix would mean a secret name
      # (user-age-keys/<user>-<hostname>) that `nixdeploy keys` never created.
      assertion = fleet ? ${config.networking.hostName};
      message = "networking.hostName ${config.networking.hostName} is not in hosts/fleet.nix";
    }
  ];
}
