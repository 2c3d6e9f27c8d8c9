// Package nix has no Go code of its own. The directory is the NixOS side of
// the nixos-anywhere plan: the fleet flake, the minimal installer flake, host
// and module files, disko layouts and the manual bootstrap script, all of
// which the bot deploys. The Go files here only test that tree, so that
// `go test ./...` checks it offline in CI: every .nix file parses, both
// flakes evaluate as real flakes (Nix 2.8, stand-in inputs) with nix/ as a
// repository subfolder and as its root, they build the hosts of
// examples/fleet/nixdeploy.toml with the same platforms, disks, SSH ports and
// LUKS unlock, and the bootstrap script behaves like the bot's install plan.
package nix
