# ganon: the gaming PC. NixOS owns its dedicated NVMe drive (LUKS + btrfs,
# hosts/common/disks/standard-btrfs.nix, wired in by flake.nix from
# hosts/fleet.nix); Windows stays on its own drive and GRUB offers it.
{ config, ... }:
{
  imports = [
    ./hardware-configuration.nix
    ../../../modules/nixos/common.nix
    ../../../modules/nixos/sops.nix
  ];

  networking.hostName = "ganon";
  networking.networkmanager.enable = true;
  users.users.${config.hostSpec.user}.extraGroups = [
    "networkmanager"
    "video"
    "gamemode"
  ];

  # NVIDIA's driver, Steam and its runtime are unfree.
  nixpkgs.config.allowUnfree = true;

  # NVIDIA proprietary driver with kernel modesetting (needed for Wayland and
  # a flicker-free handover from the initrd).
  services.xserver.videoDrivers = [ "nvidia" ];
  hardware.graphics = {
    enable = true;
    enable32Bit = true; # 32-bit games through Steam/Proton
  };
  hardware.nvidia = {
    modesetting.enable = true;
    # The closed kernel module: it supports every GPU generation. Turing (RTX
    # 20xx) or newer may switch to open = true, which NVIDIA recommends there.
    open = false;
    package = config.boot.kernelPackages.nvidiaPackages.stable;
    nvidiaSettings = true;
  };

  # A desktop to run Steam in.
  services.displayManager.sddm = {
    enable = true;
    wayland.enable = true;
  };
  services.desktopManager.plasma6.enable = true;
  services.pipewire = {
    enable = true;
    alsa.enable = true;
    alsa.support32Bit = true;
    pulse.enable = true;
  };
  security.rtkit.enable = true;

  programs.steam = {
    enable = true;
    remotePlay.openFirewall = true;
  };
  programs.gamemode.enable = true;

  # GRUB with Windows detection and the LUKS unlock come with the disk layout
  # (standard-btrfs.nix), so the installer and the full system agree on them.
}
