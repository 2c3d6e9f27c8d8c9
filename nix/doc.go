// Package nix has no Go code of its own. The directory is the NixOS side of
// the nixos-anywhere plan: the fleet flake, the minimal installer flake, host
// and module files, disko layouts and the manual bootstrap script, all of
// which the bot deploys. The Go files here only test that tree, so that
// `go test ./...` checks it offline in CI: every .nix file parses, the flakes
// build the hosts of examples/fleet/nixdeploy.toml with the same platforms
// and disks, and the bootstrap script behaves like the bot's install plan.
package nix
