package keys

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"filippo.io/age"
	"golang.org/x/crypto/ssh"
)

// Init creates whatever is missing of each host's pre-generated keys: the
// SSH host key pair and the user age identity. It never replaces a file: an
// existing private key, plaintext or sealed, is kept and only its missing .pub
// is derived from it. Each file is created exclusively, so concurrent runs
// cannot clobber each other. Problems with one item are reported in its
// Change and do not stop the others.
func (s *Store) Init(ctx context.Context, hosts []string) ([]Change, error) {
	var out []Change
	if _, err := os.Stat(s.Dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(s.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("create key directory: %w", err)
		}
		out = append(out, Change{Path: s.Dir, Action: "created"})
	} else if err != nil {
		return nil, fmt.Errorf("key directory: %w", err)
	}
	for _, h := range hosts {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		out = append(out, s.initHostKey(h)...)
		out = append(out, s.initUserKey(h))
	}
	return out, nil
}

func (s *Store) initHostKey(host string) []Change {
	key, pub := s.HostKeyPath(host), s.HostPubPath(host)
	// The .pub is looked at before the key: a run writes the key first, so
	// a .pub seen before a missing key really is an orphan, not a concurrent
	// run caught between its two writes.
	_, err := os.Lstat(pub)
	hasPub := err == nil
	plain, sealed := exists(key)
	if !plain && !sealed {
		if hasPub {
			return []Change{{Path: key, Err: fmt.Errorf("%s exists without its private key; restore the private key, or delete the .pub to generate a new pair (and re-encrypt the secrets for it)", pub)}}
		}
		created, err := s.createHostKey(host)
		switch {
		case err == nil:
			return []Change{{Path: key, Action: "created"}, created}
		case !errors.Is(err, fs.ErrExist):
			return []Change{{Path: key, Err: err}}
		}
		// A concurrent run created the key first; treat it as existing.
		_, err = os.Lstat(pub)
		hasPub = err == nil
	}
	keyChange := Change{Path: key, Action: "unchanged"}
	if sealed && !plain {
		keyChange.Path = key + SealedSuffix
	}
	if hasPub {
		return []Change{keyChange, {Path: pub, Action: "unchanged"}}
	}
	return []Change{keyChange, s.derivePub(host)}
}

// createHostKey writes a new key pair and returns the .pub's Change.
func (s *Store) createHostKey(host string) (Change, error) {
	pk, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Change{}, fmt.Errorf("generate host key: %w", err)
	}
	defer clear(priv)
	block, err := ssh.MarshalPrivateKey(priv, "root@"+host)
	if err != nil {
		return Change{}, fmt.Errorf("encode host key: %w", err)
	}
	pemBytes := pem.EncodeToMemory(block)
	defer clear(pemBytes)
	if err := writeExclusive(s.HostKeyPath(host), pemBytes, 0o600); err != nil {
		return Change{}, err
	}
	return s.writePub(host, pk, "created"), nil
}

func (s *Store) derivePub(host string) Change {
	pub := s.HostPubPath(host)
	sec, err := s.readSecret(s.HostKeyPath(host))
	if err != nil {
		return Change{Path: pub, Err: fmt.Errorf("derive public key: %w", err)}
	}
	defer clear(sec.Data)
	priv, err := ParseSSHPrivateKey(sec.Data)
	if err != nil {
		return Change{Path: pub, Err: fmt.Errorf("derive public key from %s: %w", sec.Path, err)}
	}
	return s.writePub(host, priv.Public().(ed25519.PublicKey), "derived")
}

func (s *Store) writePub(host string, pk ed25519.PublicKey, action string) Change {
	pub := s.HostPubPath(host)
	spk, err := ssh.NewPublicKey(pk)
	if err != nil {
		return Change{Path: pub, Err: err}
	}
	if err := writeExclusive(pub, authorizedKey(spk, "root@"+host), 0o644); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return Change{Path: pub, Action: "unchanged"}
		}
		return Change{Path: pub, Err: err}
	}
	return Change{Path: pub, Action: action}
}

func (s *Store) initUserKey(host string) Change {
	path := s.UserKeyPath(host)
	if plain, sealed := exists(path); plain || sealed {
		if sealed && !plain {
			path += SealedSuffix
		}
		return Change{Path: path, Action: "unchanged"}
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return Change{Path: path, Err: fmt.Errorf("generate age identity: %w", err)}
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	data := FormatAgeIdentity(id, now().UTC().Format(time.RFC3339))
	defer clear(data)
	if err := writeExclusive(path, data, 0o600); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return Change{Path: path, Action: "unchanged"}
		}
		return Change{Path: path, Err: err}
	}
	return Change{Path: path, Action: "created"}
}

// authorizedKey renders pk as a .pub line with comment.
func authorizedKey(pk ssh.PublicKey, comment string) []byte {
	line := ssh.MarshalAuthorizedKey(pk)
	line = line[:len(line)-1]
	return append(append(line, ' '), comment+"\n"...)
}
