# Evaluates the outputs of flake.nix and nixos-installer/flake.nix without
# nixpkgs (there is none offline): lib.nixosSystem is stubbed to return its
# arguments, so the result shows, per host, what each flake would build.
# Used by nix_test.go; takes the absolute path of the nix/ tree.
root:
let
  lib = {
    genAttrs =
      names: f:
      builtins.listToAttrs (
        map (n: {
          name = n;
          value = f n;
        }) names
      );
    mapAttrs = builtins.mapAttrs;
    nixosSystem = args: args;
  };
  nixpkgs = {
    inherit lib;
  };
  # Module inputs become markers, so the test can see they are included.
  marker = name: { nixosModules.${name} = "<${name}>"; };

  # Arguments for calling a module function. Laziness keeps the stubs from
  # being touched unless a module reads them at the top level.
  moduleArgs = {
    config = { };
    inherit lib;
    pkgs = { };
    options = { };
    modulesPath = "/stub/modulesPath";
    inputs = { };
  };
  evalModule = m: if builtins.isFunction m then m moduleArgs else m;
  attrModules = sys: map evalModule (builtins.filter (m: !(builtins.isPath m || builtins.isString m)) sys.modules);
  collect = f: sys: builtins.filter (v: v != null) (map f (attrModules sys));

  describe = sys: {
    inputs = builtins.attrNames (sys.specialArgs.inputs or { });
    files = map toString (builtins.filter (m: builtins.isPath m || builtins.isString m) sys.modules);
    systems = collect (m: m.nixpkgs.hostPlatform or null) sys;
    hostNames = collect (m: m.networking.hostName or null) sys;
    disks = collect (m: m.disko.devices.disk.main.device or null) sys;
    luks = collect (
      m:
      let
        c = m.disko.devices.disk.main.content.partitions.luks.content or null;
      in
      if c == null then
        null
      else
        {
          inherit (c) name passwordFile;
        }
    ) sys;
  };

  main = import (root + "/flake.nix");
  installer = import (root + "/nixos-installer/flake.nix");

  mainOutputs = main.outputs {
    self = { };
    inherit nixpkgs;
    disko = marker "disko";
    sops-nix = marker "sops";
    nixos-anywhere = { };
    nix-secrets = "/stub/nix-secrets";
  };
  installerOutputs = installer.outputs {
    self = { };
    inherit nixpkgs;
    disko = marker "disko";
    dots = {
      outPath = root;
    };
  };

  # Only what the test compares: names, urls and the flake flag.
  describeInputs = builtins.mapAttrs (
    _: i:
    {
      url = i.url or "";
      flake = i.flake or true;
    }
  );
in
{
  main = {
    inputs = describeInputs main.inputs;
    hosts = builtins.mapAttrs (_: describe) mainOutputs.nixosConfigurations;
  };
  installer = {
    inputs = describeInputs installer.inputs;
    hosts = builtins.mapAttrs (_: describe) installerOutputs.nixosConfigurations;
  };
}
