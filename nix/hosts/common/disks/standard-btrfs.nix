# ganon's layout: the whole dedicated NVMe drive, nothing shared with Windows
# (which lives on another drive).
#
#   GPT
#   ├─ ESP   1 GiB vfat  → /boot   (GRUB, kernels, initrds)
#   └─ luks  rest        → cryptroot
#      └─ btrfs: @root → /, @nix → /nix, @home → /home, @swap → /.swapvol/swapfile
#
# A function returning a module, so flake.nix and the installer flake pass the
# device and the passphrase file from hosts/fleet.nix (disk, diskKeyFile):
#   (import ./standard-btrfs.nix { device = "/dev/nvme0n1"; passwordFile = "/tmp/secret.key"; })
{
  device,
  # Where disko reads the LUKS passphrase on the install target. The install
  # uploads it there: --disk-encryption-keys <passwordFile> <keys/HOST_disk_key>.
  passwordFile,
  swapSize ? "16G",
}:
assert builtins.isString passwordFile
  || throw "standard-btrfs.nix encrypts the disk: set diskKeyFile in hosts/fleet.nix (and disk_key in nixdeploy.toml)";
{ ... }:
let
  btrfsOpts = [
    "compress=zstd"
    "noatime"
  ];
in
{
  disko.devices.disk.main = {
    type = "disk";
    inherit device;
    content = {
      type = "gpt";
      partitions = {
        ESP = {
          size = "1G";
          type = "EF00";
          content = {
            type = "filesystem";
            format = "vfat";
            mountpoint = "/boot";
            mountOptions = [ "umask=0077" ];
          };
        };
        luks = {
          size = "100%";
          content = {
            type = "luks";
            name = "cryptroot";
            # Only read while formatting: nixos-anywhere uploads it with
            # --disk-encryption-keys <passwordFile> <local file>. At boot the
            # initrd asks for the passphrase (console, or initrd SSH: see
            # modules/nixos/initrd-ssh.nix). The key store's file has no
            # trailing newline, so the typed passphrase matches.
            inherit passwordFile;
            settings.allowDiscards = true;
            content = {
              type = "btrfs";
              extraArgs = [ "-f" ];
              subvolumes = {
                "@root" = {
                  mountpoint = "/";
                  mountOptions = btrfsOpts;
                };
                "@nix" = {
                  mountpoint = "/nix";
                  mountOptions = btrfsOpts;
                };
                "@home" = {
                  mountpoint = "/home";
                  mountOptions = btrfsOpts;
                };
                # A swapfile must not be compressed or snapshotted; disko
                # creates it with `btrfs filesystem mkswapfile`, which sets
                # NOCOW. Its own subvolume keeps it out of @root snapshots.
                "@swap" = {
                  mountpoint = "/.swapvol";
                  mountOptions = [ "noatime" ];
                  swap.swapfile.size = swapSize;
                };
              };
            };
          };
        };
      };
    };
  };

  boot.loader = {
    grub = {
      enable = true;
      efiSupport = true;
      # EFI only: GRUB goes on the ESP, not into an MBR.
      device = "nodev";
      # The plan's "os-prober.enable"; the real NixOS option is useOSProber.
      # It finds Windows on the other drive and adds it to the menu.
      useOSProber = true;
      # Install to the removable-media path (\EFI\BOOT\BOOTX64.EFI) instead
      # of writing an NVRAM boot entry: nixos-anywhere installs from a kexec'd
      # kernel, where EFI variables are often unavailable, so
      # canTouchEfiVariables would fail the install. The firmware boots the
      # fallback path of this drive; Windows keeps its own ESP and entry on
      # its drive, so nothing is overwritten.
      efiInstallAsRemovable = true;
    };
    efi.canTouchEfiVariables = false;
  };
}
