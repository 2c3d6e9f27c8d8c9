# Shared NixOS configuration for every fleet host (not the installer, which
# stays minimal on purpose: see nixos-installer/minimal-configuration.nix).
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.hostSpec;
in
{
  imports = [
    ./host-spec.nix
    ./initrd-ssh.nix
  ];

  nix = {
    settings = {
      experimental-features = [
        "nix-command"
        "flakes"
      ];
      # nixos-rebuild --target-host root@… copies closures as root.
      trusted-users = [ "root" ];
      auto-optimise-store = true;
    };
    gc = {
      automatic = true;
      dates = "weekly";
      options = "--delete-older-than 14d";
    };
  };

  services.openssh = {
    enable = true;
    openFirewall = true;
    # From hosts/fleet.nix (sshPort): the port nixdeploy.toml names.
    ports = [ cfg.sshPort ];
    # Only the pre-generated ed25519 key: it is the key the bot pins and the
    # one sops-nix turns into the host's age identity. Listing it alone stops
    # sshd from generating an RSA key nobody has pinned.
    hostKeys = [
      {
        path = "/etc/ssh/ssh_host_ed25519_key";
        type = "ed25519";
      }
    ];
    settings = {
      PasswordAuthentication = false;
      KbdInteractiveAuthentication = false;
      # nixos-anywhere and nixos-rebuild --target-host log in as root.
      PermitRootLogin = "prohibit-password";
    };
  };

  users.users.root = {
    # No root password at all: "!" can never match, so root is key-only.
    hashedPassword = "!";
    openssh.authorizedKeys.keys = cfg.authorizedKeys;
  };

  users.users.${cfg.user} = {
    isNormalUser = true;
    extraGroups = [ "wheel" ];
    openssh.authorizedKeys.keys = cfg.authorizedKeys;
  };

  networking.firewall.enable = true;

  time.timeZone = lib.mkDefault "Europe/Berlin";
  i18n.defaultLocale = lib.mkDefault "en_US.UTF-8";

  documentation.enable = lib.mkDefault (!cfg.isMinimal);
  documentation.nixos.enable = lib.mkDefault (!cfg.isMinimal);

  environment.systemPackages =
    with pkgs;
    [
      git
      vim
      curl
    ]
    ++ lib.optionals (!cfg.isMinimal) [
      htop
      ripgrep
      sops
      age
      ssh-to-age
    ];

  # The release first installed; never bump it on an existing machine.
  system.stateVersion = lib.mkDefault "25.11";
}
