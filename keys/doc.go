// Package keys owns the pre-generated key workflow of the fleet: SSH host keys
// and their conversion to age recipients and identities (the ssh-to-age
// mapping), the per-host user age keys, the LUKS disk keys and initrd SSH
// host keys, the key store that may hold any of them encrypted at rest with
// age (Seal, and Unseal for the manual route), the generated .sops.yaml, and
// the preflight Check, which decrypts the sops secrets file as each host
// would at first boot (SopsFile: data key, Shamir shares, values and MAC,
// read the way sops reads them) before anything is wiped.
//
// Secret material stays in memory: no error, log line or report built here
// quotes a private key, an age identity, a disk key or a decrypted secret.
package keys
