# Only the hostname differs between the nodes; see ../../common/rk1-base.nix.
{
  imports = [ ../../common/rk1-base.nix ];
  networking.hostName = "rk1-node4";
}
