# The fleet as the Nix side sees it. flake.nix and nixos-installer/flake.nix
# both build their nixosConfigurations from this one table, so the full system
# and the installer can never disagree about a host's platform or disk. The Go
# tests in ../nix_test.go compare it with examples/fleet/nixdeploy.toml.
#
# Plain Nix on purpose (no lib, no pkgs): it must evaluate with bare
# `nix-instantiate --eval`, without nixpkgs.
#
#   system     nixpkgs.hostPlatform of the host
#   disk       the device disko formats on install (destructive!)
#   diskLayout file name under hosts/common/disks/, called with { device = disk; }
#   hardware   hardware module under hosts/, shared with the installer
#   address    LAN address; used for /etc/hosts on the cluster nodes
let
  rk1 = n: {
    name = "rk1-node${toString n}";
    value = {
      system = "aarch64-linux";
      disk = "/dev/mmcblk0";
      diskLayout = "rk1-emmc";
      hardware = "common/rk1-hardware.nix";
      address = "192.168.1.1${toString n}";
    };
  };
in
{
  ganon = {
    system = "x86_64-linux";
    disk = "/dev/nvme0n1";
    diskLayout = "standard-btrfs";
    hardware = "nixos/ganon/hardware-configuration.nix";
    address = "192.168.1.100";
  };
}
// builtins.listToAttrs (map rk1 [ 1 2 3 4 ])
