{
  description = "Minimal NixOS for nixos-anywhere: SSH, networking and the disk layout";

  # Only nixpkgs and disko: the installer neither evaluates nor locks the
  # parent flake's inputs, so installing needs no access to the private
  # nix-secrets repository (the host key arrives through --extra-files,
  # secrets come with the first nixos-rebuild).
  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

    disko = {
      url = "github:nix-community/disko";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs =
    {
      nixpkgs,
      disko,
      ...
    }@inputs:
    let
      # The parent tree (hosts/, modules/) is reached with path literals
      # relative to this file, not with an input and not from self.outPath:
      #  - a `path:..` input resolves to the git repository's root, not to
      #    the parent folder, when this tree is a subfolder of a repository;
      #  - self.outPath is the repository root in Nix 2.8 but root + subdir in
      #    current Nix (src/libflake/call-flake.nix), so dirOf self.outPath
      #    is right in one of them only;
      #  - a path literal is parsed relative to this flake.nix inside the
      #    copied source tree, which holds the whole repository whenever the
      #    flake is addressed in a git repository (a directory in the work
      #    tree, git+file:…?dir=…, github:…?dir=…). Nix's own test
      #    tests/functional/flakes/get-flake.sh calls it the better way.
      # A flake copied on its own (path:/…/nixos-installer outside git) has
      # no parent to read: use it from the repository.
      nixTree = ./..;

      # The same table as the full flake, so host names, platforms, disks,
      # SSH ports and the LUKS unlock cannot drift between the install and
      # the first rebuild.
      fleet = import (nixTree + "/hosts/fleet.nix");

      mkInstaller =
        name: host:
        nixpkgs.lib.nixosSystem {
          specialArgs = { inherit inputs; };
          modules = [
            disko.nixosModules.disko
            (nixTree + "/modules/nixos/host-spec.nix")
            (nixTree + "/hosts/common/authorized-keys.nix")
            (nixTree + "/hosts/${host.hardware}")
            (import (nixTree + "/hosts/common/disks/${host.diskLayout}.nix") {
              device = host.disk;
              passwordFile = host.diskKeyFile;
            })
            ./minimal-configuration.nix
            {
              networking.hostName = name;
              nixpkgs.hostPlatform = host.system;
              hostSpec = {
                inherit (host) sshPort initrdSsh;
              };
            }
          ];
        };
    in
    {
      nixosConfigurations = nixpkgs.lib.mapAttrs mkInstaller fleet;
    };
}
