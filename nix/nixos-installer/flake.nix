{
  description = "Minimal NixOS for nixos-anywhere: SSH, networking and the disk layout";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

    disko = {
      url = "github:nix-community/disko";
      inputs.nixpkgs.follows = "nixpkgs";
    };

    # The parent flake's source tree, for hosts/ and modules/. Taken as
    # `flake = false` so the installer neither evaluates nor locks the parent's
    # inputs: it must install without access to the private nix-secrets repo.
    # Relative path inputs need Nix >= 2.26.
    dots = {
      url = "path:..";
      flake = false;
    };
  };

  outputs =
    {
      nixpkgs,
      disko,
      dots,
      ...
    }@inputs:
    let
      # The same table as the full flake, so host names, platforms and disks
      # cannot drift between the install and the first rebuild.
      fleet = import "${dots}/hosts/fleet.nix";

      mkInstaller =
        name: host:
        nixpkgs.lib.nixosSystem {
          specialArgs = { inherit inputs; };
          modules = [
            disko.nixosModules.disko
            "${dots}/modules/nixos/host-spec.nix"
            "${dots}/hosts/common/authorized-keys.nix"
            "${dots}/hosts/${host.hardware}"
            (import "${dots}/hosts/common/disks/${host.diskLayout}.nix" { device = host.disk; })
            ./minimal-configuration.nix
            {
              networking.hostName = name;
              nixpkgs.hostPlatform = host.system;
            }
          ];
        };
    in
    {
      nixosConfigurations = nixpkgs.lib.mapAttrs mkInstaller fleet;
    };
}
