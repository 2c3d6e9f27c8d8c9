# Stand-in for disko in nix_test.go: a marker module the test looks for.
{
  outputs = _: {
    nixosModules.disko = {
      stub = "disko";
    };
  };
}
