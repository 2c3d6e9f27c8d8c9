package keys

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"errors"
	"fmt"
	"strings"

	"filippo.io/age"
	"filippo.io/edwards25519"
	"golang.org/x/crypto/ssh"

	"github.com/nixdeploy/nixdeploy/keys/internal/bech32"
)

// ErrUnsupportedKey is returned for SSH keys that have no age equivalent:
// only ed25519 keys map onto X25519.
var ErrUnsupportedKey = errors.New("only ssh-ed25519 keys can be converted to age")

// ErrPassphrase is returned for a passphrase-protected private key. The bot
// runs unattended, so its keys are protected by the age key store instead.
var ErrPassphrase = errors.New("private key is protected by a passphrase; keep an unencrypted copy sealed in the key store instead (nixdeploy keys seal)")

// AgeRecipient converts an ssh-ed25519 public key into the age X25519
// recipient that sops-nix derives from the same host key: the Montgomery form
// of the Edwards point, Bech32-encoded under "age". It matches ssh-to-age
// byte for byte.
func AgeRecipient(pk ssh.PublicKey) (string, error) {
	if pk.Type() != ssh.KeyAlgoED25519 {
		return "", fmt.Errorf("%s key: %w", pk.Type(), ErrUnsupportedKey)
	}
	cpk, ok := pk.(ssh.CryptoPublicKey)
	if !ok {
		return "", fmt.Errorf("%s key: %w", pk.Type(), ErrUnsupportedKey)
	}
	epk, ok := cpk.CryptoPublicKey().(ed25519.PublicKey)
	if !ok {
		return "", fmt.Errorf("%s key: %w", pk.Type(), ErrUnsupportedKey)
	}
	return Ed25519AgeRecipient(epk)
}

// Ed25519AgeRecipient is AgeRecipient for a raw ed25519 public key.
func Ed25519AgeRecipient(pk ed25519.PublicKey) (string, error) {
	p, err := new(edwards25519.Point).SetBytes(pk)
	if err != nil {
		return "", fmt.Errorf("ed25519 public key is not a valid curve point: %w", err)
	}
	return bech32.Encode("age", p.BytesMontgomery())
}

// Ed25519AgeIdentity converts an ed25519 private key into the matching age
// X25519 identity: the first half of SHA-512 of the seed, which is the
// scalar ed25519 itself uses. Like ssh-to-age it is encoded unclamped; X25519
// clamps the scalar when it is used, so age computes the same public key.
func Ed25519AgeIdentity(priv ed25519.PrivateKey) (*age.X25519Identity, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, errors.New("ed25519 private key has the wrong size")
	}
	h := sha512.Sum512(priv.Seed())
	defer clear(h[:])
	s, err := bech32.Encode("AGE-SECRET-KEY-", h[:32])
	if err != nil {
		return nil, errors.New("cannot encode age identity")
	}
	id, err := age.ParseX25519Identity(s)
	if err != nil {
		// age's message could quote part of the key; say only what failed.
		return nil, errors.New("cannot parse derived age identity")
	}
	return id, nil
}

// ParseSSHPrivateKey parses an unencrypted OpenSSH (or PEM) ed25519 private
// key. A passphrase-protected key yields ErrPassphrase, another key type
// ErrUnsupportedKey.
func ParseSSHPrivateKey(pemBytes []byte) (ed25519.PrivateKey, error) {
	raw, err := ssh.ParseRawPrivateKey(pemBytes)
	var pme *ssh.PassphraseMissingError
	if errors.As(err, &pme) {
		return nil, ErrPassphrase
	}
	if err != nil {
		// x/crypto/ssh errors describe the format, never the key bytes.
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	switch k := raw.(type) {
	case *ed25519.PrivateKey:
		return *k, nil
	case ed25519.PrivateKey:
		return k, nil
	default:
		signer, err := ssh.NewSignerFromKey(raw)
		if err != nil {
			return nil, ErrUnsupportedKey
		}
		return nil, fmt.Errorf("%s key: %w", signer.PublicKey().Type(), ErrUnsupportedKey)
	}
}

// SSHAgeIdentity converts an OpenSSH ed25519 private key file's contents into
// an age identity, like ssh-to-age -private-key.
func SSHAgeIdentity(pemBytes []byte) (*age.X25519Identity, error) {
	priv, err := ParseSSHPrivateKey(pemBytes)
	if err != nil {
		return nil, err
	}
	return Ed25519AgeIdentity(priv)
}

// PublicKeyLine is one key found by ParsePublicKeys.
type PublicKeyLine struct {
	// Line is the 1-based line number in the input.
	Line int
	// Marker is a known_hosts marker without its "@" ("cert-authority",
	// "revoked"), or empty.
	Marker string
	// Hosts are the known_hosts or ssh-keyscan host patterns, hashed or not;
	// empty for authorized_keys and .pub lines.
	Hosts   []string
	Key     ssh.PublicKey
	Comment string
}

// ParsePublicKeys reads SSH public keys in any of the forms an operator has at
// hand: .pub files and authorized_keys lines (with options), known_hosts lines
// (host patterns, hashed hosts, @cert-authority and @revoked markers) and
// ssh-keyscan output. Blank lines and comments are skipped. An unparsable line
// is an error naming its line number.
func ParsePublicKeys(data []byte) ([]PublicKeyLine, error) {
	var out []PublicKeyLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, err := parsePublicKeyLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		k.Line = n
		out = append(out, k)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

func parsePublicKeyLine(line string) (PublicKeyLine, error) {
	fields := strings.Fields(line)
	// known_hosts and ssh-keyscan lines put the host patterns (or a marker)
	// before the key type; authorized_keys puts options there, so only a
	// key type in the second field identifies a host line.
	if line[0] == '@' || (len(fields) >= 2 && isKeyType(fields[1])) {
		marker, hosts, pk, comment, _, err := ssh.ParseKnownHosts([]byte(line))
		if err != nil {
			return PublicKeyLine{}, fmt.Errorf("not a known_hosts line: %w", err)
		}
		return PublicKeyLine{Marker: marker, Hosts: hosts, Key: pk, Comment: comment}, nil
	}
	pk, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return PublicKeyLine{}, fmt.Errorf("not an SSH public key: %w", err)
	}
	return PublicKeyLine{Key: pk, Comment: comment}, nil
}

func isKeyType(s string) bool {
	return strings.HasPrefix(s, "ssh-") || strings.HasPrefix(s, "ecdsa-sha2-") || strings.HasPrefix(s, "sk-")
}

// FormatAgeIdentity renders id in the file format of age-keygen, which the age
// CLI, sops and sops-nix all read.
func FormatAgeIdentity(id *age.X25519Identity, created string) []byte {
	var b bytes.Buffer
	if created != "" {
		fmt.Fprintf(&b, "# created: %s\n", created)
	}
	fmt.Fprintf(&b, "# public key: %s\n", id.Recipient())
	fmt.Fprintf(&b, "%s\n", id)
	return b.Bytes()
}

// IdentityFromKeyFile returns the age identity of a key file's contents:
// an OpenSSH ed25519 private key is converted, an age-keygen file is parsed.
func IdentityFromKeyFile(data []byte) (*age.X25519Identity, error) {
	if bytes.Contains(data, []byte("-----BEGIN ")) {
		return SSHAgeIdentity(data)
	}
	id, err := parseSingleX25519("file", data)
	if err != nil {
		return nil, errors.New("neither an OpenSSH private key nor an age identity file")
	}
	return id, nil
}
