# Placeholder for ganon's detected hardware. Replace it with the real thing at
# install time:
#
#   nixos-anywhere --generate-hardware-config nixos-generate-config \
#     ./hosts/nixos/ganon/hardware-configuration.nix …
#
# or later, on ganon: nixos-generate-config --no-filesystems --show-hardware-config
#
# No fileSystems or swapDevices here: disko declares them from
# hosts/common/disks/standard-btrfs.nix (nixos-anywhere generates this file
# with --no-filesystems for that reason).
{
  config,
  lib,
  modulesPath,
  ...
}:
{
  imports = [ (modulesPath + "/installer/scan/not-detected.nix") ];

  boot.initrd.availableKernelModules = [
    "nvme"
    "xhci_pci"
    "ahci"
    "usbhid"
    "usb_storage"
    "sd_mod"
  ];
  boot.initrd.kernelModules = [ ];
  boot.kernelModules = [ "kvm-amd" ];
  boot.extraModulePackages = [ ];

  networking.useDHCP = lib.mkDefault true;

  nixpkgs.hostPlatform = lib.mkDefault "x86_64-linux";
  hardware.cpu.amd.updateMicrocode = lib.mkDefault config.hardware.enableRedistributableFirmware;
}
