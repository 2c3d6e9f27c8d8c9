# Stand-in for nixpkgs in nix_test.go (offline: there is no nixpkgs). Only
# what flake.nix and nixos-installer/flake.nix call at the top level:
# lib.nixosSystem returns its arguments, so the test sees each host's modules.
{
  outputs = _: {
    lib = {
      nixosSystem = args: args;
      mapAttrs = builtins.mapAttrs;
      genAttrs =
        names: f:
        builtins.listToAttrs (
          map (n: {
            name = n;
            value = f n;
          }) names
        );
    };
    legacyPackages = { };
  };
}
