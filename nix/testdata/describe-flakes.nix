# Applied (nix eval --apply) to the nixosConfigurations of flake.nix and
# nixos-installer/flake.nix, evaluated as real flakes with the stand-in
# inputs of testdata/stubs (lib.nixosSystem returns its arguments). It shows,
# per host, what each flake would build. Used by nix_test.go.
#
# Plain builtins only: --apply runs in pure evaluation mode and can import
# nothing.
configs:
let
  # Arguments for calling a module function. Laziness keeps the stubs from
  # being touched unless a module reads them at the top level.
  moduleArgs = {
    config = { };
    lib = { };
    pkgs = { };
    options = { };
    modulesPath = "/stub/modulesPath";
    inputs = { };
  };
  evalModule = m: if builtins.isFunction m then m moduleArgs else m;
  isFile = m: builtins.isPath m || builtins.isString m;
  isStub = m: builtins.isAttrs m && m ? stub;
  attrModules = sys: map evalModule (builtins.filter (m: !(isFile m || isStub m)) sys.modules);
  collect = f: sys: builtins.filter (v: v != null) (map f (attrModules sys));

  describe = sys: {
    inputs = builtins.attrNames (sys.specialArgs.inputs or { });
    # toString: a path is not copied to the store (toJSON would copy it).
    files = map toString (builtins.filter isFile sys.modules);
    stubs = map (m: m.stub) (builtins.filter isStub sys.modules);
    systems = collect (m: m.nixpkgs.hostPlatform or null) sys;
    hostNames = collect (m: m.networking.hostName or null) sys;
    disks = collect (m: m.disko.devices.disk.main.device or null) sys;
    sshPorts = collect (m: m.hostSpec.sshPort or null) sys;
    initrdSsh = collect (
      m: if m ? hostSpec && m.hostSpec ? initrdSsh then { value = m.hostSpec.initrdSsh; } else null
    ) sys;
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
in
builtins.mapAttrs (_: describe) configs
