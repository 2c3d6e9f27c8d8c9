// Package keys owns the pre-generated key workflow of the fleet: SSH host keys
// and their conversion to age recipients and identities (the ssh-to-age
// mapping), the per-host user age keys, the key store that may hold any of
// them encrypted at rest with age, the generated .sops.yaml, and the preflight
// Check that proves the secrets were re-encrypted for a host before it is
// installed.
//
// Secret material stays in memory: no error, log line or report built here
// quotes a private key, an age identity or a decrypted secret.
package keys
