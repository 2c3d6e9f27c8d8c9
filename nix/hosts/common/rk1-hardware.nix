# Turing RK1 (Rockchip RK3588) hardware. Shared by the full node config
# (rk1-base.nix) and the installer, so the system nixos-anywhere installs can
# already boot on the board.
{ lib, pkgs, ... }:
{
  nixpkgs.hostPlatform = lib.mkDefault "aarch64-linux";

  # ubootTuringRK1 (written by disks/rk1-emmc.nix) links Rockchip's DDR init
  # blob from rkbin, which nixpkgs marks unfree. Allow exactly that.
  nixpkgs.config.allowUnfreePredicate = pkg: builtins.elem (lib.getName pkg) [ "rkbin" ];

  # The RK1 device tree is in mainline Linux; the newest kernel carries the
  # most RK3588 support (PCIe, NVMe, ethernet, thermal).
  boot.kernelPackages = lib.mkDefault pkgs.linuxPackages_latest;
  hardware.deviceTree = {
    enable = true;
    name = "rockchip/rk3588-turing-rk1.dtb";
  };
  # No console= on purpose: the device tree's stdout-path names the UART the
  # Turing Pi BMC exposes (uart9, 115200 baud), and the ttyS number it gets
  # depends on the kernel config, so a hard-coded ttySN can silently be wrong.

  # U-Boot reads /boot/extlinux/extlinux.conf; there is no UEFI and no GRUB.
  boot.loader.grub.enable = false;
  boot.loader.generic-extlinux-compatible.enable = true;

  boot.initrd.availableKernelModules = [
    "mmc_block"
    "sdhci_of_dwcmshc" # the RK3588 eMMC controller
    "nvme"
    "usb_storage"
    "usbhid"
  ];

  hardware.enableRedistributableFirmware = true;
}
