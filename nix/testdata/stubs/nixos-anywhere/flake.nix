# Stand-in for nixos-anywhere in nix_test.go; only devShells reads it.
{
  outputs = _: {
    packages = { };
  };
}
