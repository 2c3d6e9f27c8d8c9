# The nixpkgs lib functions this tree's modules call, for nix_test.go's
# TestModules (offline: there is no nixpkgs). mkIf and the override
# wrappers keep nixpkgs' own representation (lib/modules.nix: mkIf returns
# { _type = "if"; condition; content; }, mkOverride { _type = "override";
# priority; content; }), so the test reads a module's result as the module
# system would before merging.
{
  mkIf = condition: content: {
    _type = "if";
    inherit condition content;
  };
  mkOverride = priority: content: {
    _type = "override";
    inherit priority content;
  };
  mkDefault = content: {
    _type = "override";
    priority = 1000;
    inherit content;
  };
  mkForce = content: {
    _type = "override";
    priority = 50;
    inherit content;
  };
  optional = cond: x: if cond then [ x ] else [ ];
  optionals = cond: xs: if cond then xs else [ ];
}
