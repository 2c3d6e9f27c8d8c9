{
  description = "NixOS fleet: ganon and the Turing RK1 nodes, installed with nixos-anywhere";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

    disko = {
      url = "github:nix-community/disko";
      inputs.nixpkgs.follows = "nixpkgs";
    };

    nixos-anywhere = {
      url = "github:nix-community/nixos-anywhere";
      inputs.nixpkgs.follows = "nixpkgs";
      inputs.disko.follows = "disko";
    };

    sops-nix = {
      url = "github:Mic92/sops-nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };

    # The private repo holding secrets.yaml (sops-encrypted). Not a flake:
    # only its files are read. Replace CHANGEME (see README.md).
    nix-secrets = {
      url = "git+ssh://git@github.com/CHANGEME/nix-secrets.git?ref=main&shallow=1";
      flake = false;
    };
  };

  outputs =
    {
      nixpkgs,
      disko,
      nixos-anywhere,
      ...
    }@inputs:
    let
      forAllSystems = nixpkgs.lib.genAttrs [
        "x86_64-linux"
        "aarch64-linux"
        # "aarch64-darwin"
        # "x86_64-darwin"
      ];

      # One entry per host; the same table drives nixos-installer/flake.nix.
      fleet = import ./hosts/fleet.nix;

      mkHost =
        name: host:
        nixpkgs.lib.nixosSystem {
          specialArgs = { inherit inputs; };
          modules = [
            ./hosts/nixos/${name}/configuration.nix
            ./hosts/common/authorized-keys.nix
            disko.nixosModules.disko
            (import ./hosts/common/disks/${host.diskLayout}.nix {
              device = host.disk;
              passwordFile = host.diskKeyFile;
            })
            {
              nixpkgs.hostPlatform = host.system;
              hostSpec = {
                inherit (host) sshPort initrdSsh;
              };
            }
          ];
        };
    in
    {
      # ganon, rk1-node1 … rk1-node4: all from hosts/fleet.nix.
      nixosConfigurations = nixpkgs.lib.mapAttrs mkHost fleet;

      # `nix develop`: the tools of the key workflow and the manual bootstrap.
      devShells = forAllSystems (
        system:
        let
          pkgs = nixpkgs.legacyPackages.${system};
        in
        {
          default = pkgs.mkShell {
            packages = [
              nixos-anywhere.packages.${system}.default
              pkgs.nixos-rebuild
              pkgs.sops
              pkgs.age
              pkgs.ssh-to-age
              pkgs.shellcheck
            ];
          };
        }
      );
    };
}
