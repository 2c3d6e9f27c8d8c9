# A Turing RK1's eMMC. U-Boot lives in the raw area in front of the first
# partition, where the RK3588 boot ROM looks for it:
#
#   sector 0-33    protective MBR + GPT (written by disko)
#   32 KiB (s. 64) u-boot-rockchip.bin = idbloader (TPL+SPL) + u-boot.itb at
#                  8 MiB, written by the postCreateHook below
#   16 MiB         ESP   512 MiB vfat → /boot  (extlinux/extlinux.conf)
#   …              root  rest ext4   → /
#
# U-Boot's standard boot scans the eMMC, finds /boot/extlinux/extlinux.conf
# (written by boot.loader.generic-extlinux-compatible) and boots NixOS with
# the mainline device tree. See nix/README.md for why U-Boot lives here.
#
# No LUKS: the nodes are headless and nobody is there to type a passphrase.
# No swap partition: zram (rk1-base.nix) spares the eMMC.
#
# A function returning a module, like standard-btrfs.nix:
#   (import ./rk1-emmc.nix { device = "/dev/disk/by-path/platform-fe2e0000.mmc"; })
# disko names the partitions of a /dev/disk/… device <device>-partN, which
# udev creates for by-path links too.
{
  device,
  # No LUKS on this layout; the flakes pass diskKeyFile from hosts/fleet.nix,
  # which must be null for it.
  passwordFile ? null,
}:
assert passwordFile == null
  || throw "rk1-emmc.nix has no LUKS: set diskKeyFile = null in hosts/fleet.nix (and no disk_key in nixdeploy.toml)";
{ pkgs, ... }:
{
  disko.devices.disk.main = {
    type = "disk";
    inherit device;
    content = {
      type = "gpt";
      partitions = {
        ESP = {
          # Leave the first 16 MiB to U-Boot (it ends a little after 8 MiB).
          start = "16M";
          size = "512M";
          type = "EF00";
          content = {
            type = "filesystem";
            format = "vfat";
            mountpoint = "/boot";
            mountOptions = [ "umask=0077" ];
          };
        };
        root = {
          size = "100%";
          content = {
            type = "filesystem";
            format = "ext4";
            mountpoint = "/";
            # commit=60 batches journal writes; trim is periodic (fstrim).
            mountOptions = [
              "noatime"
              "commit=60"
            ];
          };
        };
      };
      # After partitioning, so the GPT is in place and nothing is formatted
      # over it. conv=notrunc keeps the partition table in sectors 0-33.
      postCreateHook = ''
        dd if=${pkgs.ubootTuringRK1}/u-boot-rockchip.bin of=${device} \
          bs=512 seek=64 conv=notrunc,fsync
      '';
    };
  };
}
