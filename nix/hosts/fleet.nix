# The fleet as the Nix side sees it. flake.nix and nixos-installer/flake.nix
# both build their nixosConfigurations from this one table, so the full system
# and the installer can never disagree about a host's platform, disk, SSH port
# or LUKS unlock. The Go tests in ../nix_test.go and `nixdeploy check` compare
# it with the fleet config (examples/fleet/nixdeploy.toml).
#
# Plain Nix on purpose (no lib, no pkgs): it must evaluate with bare
# `nix-instantiate --eval`, without nixpkgs.
#
#   system       nixpkgs.hostPlatform of the host
#   disk         the device disko formats on install (destructive!)
#   diskLayout   file name under hosts/common/disks/, called with
#                { device = disk; passwordFile = diskKeyFile; }
#   hardware     hardware module under hosts/, shared with the installer
#   address      LAN address; used for /etc/hosts on the cluster nodes
#   sshPort      services.openssh.ports after the install     (toml: port)
#   diskKeyFile  where disko reads the LUKS passphrase on the install target;
#                null = no LUKS                              (toml: disk_key)
#   initrdSsh    null, or the initrd SSH server that unlocks LUKS remotely
#                (modules/nixos/initrd-ssh.nix)           (toml: [hosts.initrd_ssh])
#     port            its port, not sshPort                      (port)
#     hostKeyPath     the pre-generated initrd host key on the target; it
#                     arrives through --extra-files            (host_key_path)
#     kernelModules   the NIC driver(s) the initrd needs for the network
#     network         "dhcp", or { address = "192.168.1.100/24"; gateway = …;
#                     interface = "enp5s0"; } for a static address
let
  # RK3588's eMMC controller is sdhci: mmc@fe2e0000 in mainline's
  # rk3588-base.dtsi; udev names it by its platform path. A stable name, unlike
  # mmcblkN, which depends on probe order (SD card, SDIO). Check it on the
  # node with `ls -l /dev/disk/by-path/` (see README.md, "RK1").
  rk1Disk = "/dev/disk/by-path/platform-fe2e0000.mmc";

  rk1 = n: {
    name = "rk1-node${toString n}";
    value = {
      system = "aarch64-linux";
      disk = rk1Disk;
      diskLayout = "rk1-emmc";
      hardware = "common/rk1-hardware.nix";
      address = "192.168.1.1${toString n}";
      sshPort = 22;
      # Headless: no LUKS, nobody would be there to unlock it.
      diskKeyFile = null;
      initrdSsh = null;
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
    sshPort = 22;
    diskKeyFile = "/tmp/secret.key";
    initrdSsh = {
      port = 2222;
      hostKeyPath = "/etc/secrets/initrd/ssh_host_ed25519_key";
      # PLACEHOLDER: ganon's onboard NIC driver. Check it on the running
      # system with `lspci -k` (the "Kernel driver in use:" line of the
      # Ethernet controller): r8169 for Realtek, igc for Intel I225/I226,
      # e1000e for older Intel. A wrong module leaves the initrd offline and
      # the passphrase has to be typed at the console.
      kernelModules = [ "r8169" ];
      network = "dhcp";
    };
  };
}
// builtins.listToAttrs (
  map rk1 [
    1
    2
    3
    4
  ]
)
