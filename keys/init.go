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

	"github.com/nixdeploy/nixdeploy"
)

// Init creates whatever is missing of each host's pre-generated keys: the
// SSH host key pair and the user age identity. It never replaces a file: an
// existing private key, plaintext or sealed, is kept and only its missing .pub
// is derived from it. Each file is created exclusively, so concurrent runs
// cannot clobber each other. Problems with one item are reported in its
// Change and do not stop the others.
func (s *Store) Init(ctx context.Context, hosts []string) ([]Change, error) {
	specs := make([]nixdeploy.Host, len(hosts))
	for i, h := range hosts {
		specs[i] = nixdeploy.Host{Name: h}
	}
	return s.InitHosts(ctx, specs)
}

// InitHosts is Init for the fleet's host entries: besides the SSH host key
// and the user age identity it creates a disk key for every LUKS host
// (Host.LUKS) and an initrd SSH host key for every host with initrd_ssh,
// under the same never-replace rules.
func (s *Store) InitHosts(ctx context.Context, hosts []nixdeploy.Host) ([]Change, error) {
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
		out = append(out, s.initKeyPair(s.HostKeyPath(h.Name), "root@"+h.Name)...)
		out = append(out, s.initUserKey(h.Name))
		if h.LUKS() {
			out = append(out, s.initDiskKey(h.Name))
		}
		if h.InitrdSSH != nil {
			out = append(out, s.initKeyPair(s.InitrdKeyPath(h.Name), "initrd@"+h.Name)...)
		}
	}
	return out, nil
}

// initKeyPair creates or completes the ed25519 pair at key and key+".pub"
// (the host key or the initrd host key); comment ends the .pub line.
func (s *Store) initKeyPair(key, comment string) []Change {
	pub := key + ".pub"
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
		created, err := s.createKeyPair(key, comment)
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
	return []Change{keyChange, s.derivePub(key, comment)}
}

// createKeyPair writes a new key pair and returns the .pub's Change.
func (s *Store) createKeyPair(key, comment string) (Change, error) {
	pk, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Change{}, fmt.Errorf("generate host key: %w", err)
	}
	defer clear(priv)
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return Change{}, fmt.Errorf("encode host key: %w", err)
	}
	pemBytes := pem.EncodeToMemory(block)
	defer clear(pemBytes)
	if err := writeExclusive(key, pemBytes, 0o600); err != nil {
		return Change{}, err
	}
	return writePub(key+".pub", pk, comment, "created"), nil
}

func (s *Store) derivePub(key, comment string) Change {
	pub := key + ".pub"
	sec, err := s.readSecret(key)
	if err != nil {
		return Change{Path: pub, Err: fmt.Errorf("derive public key: %w", err)}
	}
	defer clear(sec.Data)
	priv, err := ParseSSHPrivateKey(sec.Data)
	if err != nil {
		return Change{Path: pub, Err: fmt.Errorf("derive public key from %s: %w", sec.Path, err)}
	}
	return writePub(pub, priv.Public().(ed25519.PublicKey), comment, "derived")
}

func writePub(pub string, pk ed25519.PublicKey, comment, action string) Change {
	spk, err := ssh.NewPublicKey(pk)
	if err != nil {
		return Change{Path: pub, Err: err}
	}
	if err := writeExclusive(pub, authorizedKey(spk, comment), 0o644); err != nil {
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
	return createSecret(path, data)
}

// createSecret writes data to path (0600) unless the file appeared
// meanwhile, which leaves it unchanged: init never replaces a key.
func createSecret(path string, data []byte) Change {
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

func (s *Store) initDiskKey(host string) Change {
	path := s.DiskKeyPath(host)
	if plain, sealed := exists(path); plain || sealed {
		if sealed && !plain {
			path += SealedSuffix
		}
		return Change{Path: path, Action: "unchanged"}
	}
	key, err := NewDiskKey()
	if err != nil {
		return Change{Path: path, Err: err}
	}
	defer clear(key)
	return createSecret(path, key)
}

// diskKeyAlphabet has no characters that are easily confused when read
// (0/o, 1/l) and none that move between US and German keyboard layouts
// (y/z, punctuation): the initrd's passphrase prompt may run with a
// different keymap than the one the operator is used to.
const diskKeyAlphabet = "23456789abcdefghijkmnpqrstuvwx"

// Disk key shape: six groups of five characters joined by spaces, about
// 147 bits (30 × log2(30)).
const (
	diskKeyGroups    = 6
	diskKeyGroupSize = 5
)

// NewDiskKey returns a random LUKS passphrase that a person can type at the
// console, such as "k7m2q 9xbtr …". It has no trailing newline: disko
// pipes the file to cryptsetup luksFormat, which would take a newline as
// part of the passphrase that the console prompt never sends.
func NewDiskKey() ([]byte, error) {
	out := make([]byte, 0, diskKeyGroups*(diskKeyGroupSize+1))
	var b [1]byte
	n := len(diskKeyAlphabet)
	// Rejection sampling keeps every character equally likely.
	limit := 256 - 256%n
	for len(out) < cap(out)-1 {
		if len(out)%(diskKeyGroupSize+1) == diskKeyGroupSize {
			out = append(out, ' ')
			continue
		}
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("generate disk key: %w", err)
		}
		if int(b[0]) >= limit {
			continue
		}
		out = append(out, diskKeyAlphabet[int(b[0])%n])
	}
	return out, nil
}
