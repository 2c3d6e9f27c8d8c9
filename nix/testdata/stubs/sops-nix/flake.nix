# Stand-in for sops-nix in nix_test.go: a marker module.
{
  outputs = _: {
    nixosModules.sops = {
      stub = "sops-nix";
    };
  };
}
