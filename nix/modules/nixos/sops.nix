# System-level sops: the host decrypts its own user age key from
# nix-secrets/secrets.yaml with an age identity derived from its
# pre-generated SSH host key, then hands the key to hostSpec.user for Home
# Manager's sops. `nixdeploy keys sops-config` writes the matching recipients.
{
  config,
  lib,
  pkgs,
  inputs,
  ...
}:
let
  user = config.hostSpec.user;
  account = config.users.users.${user};
  secretPath = "/run/secrets/user-age-key";
in
{
  imports = [ inputs.sops-nix.nixosModules.sops ];

  sops = {
    # The key nixos-anywhere placed through --extra-files; its age recipient is
    # what `nixdeploy keys sops-config` lists for this host.
    age.sshKeyPaths = [ "/etc/ssh/ssh_host_ed25519_key" ];
    # No RSA host key exists (see common.nix), so no GnuPG import either.
    gnupg.sshKeyPaths = [ ];

    # "a/b" is the nested YAML key a: { b: … } in secrets.yaml.
    secrets."user-age-keys/${user}-${config.networking.hostName}" = {
      sopsFile = inputs.nix-secrets + "/secrets.yaml";
      path = secretPath;
      mode = "0400";
      owner = account.name;
    };

    # The user's password hash (`mkpasswd -m yescrypt`), a top-level key
    # <user>-password in secrets.yaml. neededForUsers decrypts it to
    # /run/secrets-for-users before the users are created, as
    # hashedPasswordFile requires (sops-nix README, "Setting a user's password").
    secrets."${user}-password" = lib.mkIf config.hostSpec.hashedPasswordFromSops {
      sopsFile = inputs.nix-secrets + "/secrets.yaml";
      neededForUsers = true;
    };
  };

  # First login at the console or the display manager, and sudo. Root stays
  # key-only (common.nix: hashedPassword = "!", prohibit-password).
  users.users.${user}.hashedPasswordFile = lib.mkIf config.hostSpec.hashedPasswordFromSops config.sops.secrets."${user}-password".path;

  # Copy the key to where sops for Home Manager looks. Runs as the user, so a
  # symlink planted in their home cannot redirect a root-owned write.
  system.activationScripts.userAgeKey = {
    # "users" creates the home directory. sops-nix only defines setupSecrets
    # when it installs secrets from activation (not with sysusers/userborn,
    # where a systemd unit does it); a dependency on a script that does not
    # exist aborts evaluation, hence the check.
    deps = [ "users" ] ++ lib.optional (config.system.activationScripts ? setupSecrets) "setupSecrets";
    text = ''
      # On the first boot the secret may not exist yet (host not yet in
      # .sops.yaml, or secrets not re-encrypted): skip, the next switch copies it.
      if [ -e ${secretPath} ] && [ -d ${lib.escapeShellArg account.home} ]; then
        ${pkgs.util-linux}/bin/runuser -u ${lib.escapeShellArg user} -- ${pkgs.bash}/bin/sh -c '
          umask 077
          ${pkgs.coreutils}/bin/mkdir -p "$1/.config/sops/age"
          ${pkgs.coreutils}/bin/install -m 600 ${secretPath} "$1/.config/sops/age/keys.txt"
        ' sh ${lib.escapeShellArg account.home}
      fi
    '';
  };
}
