package keys

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"filippo.io/age"
	"filippo.io/age/armor"
)

// SetDiskKey replaces host's disk key with key, for an operator who wants
// a passphrase of their own. The store keeps the form it had: a sealed key
// is replaced by a sealed one (encrypted to recipients, checked by reading
// it back), a plaintext one by a plaintext one (0600); with neither, it
// takes the form of the host's SSH host key.
// One trailing newline is removed (what echo and a heredoc add, and what
// cryptsetup would take as part of the passphrase); an empty key is
// refused.
func (s *Store) SetDiskKey(host string, key []byte, recipients []age.Recipient) (Change, error) {
	key = trimOneNewline(key)
	if len(key) == 0 {
		return Change{}, errors.New("the disk key is empty")
	}
	if strings.ContainsAny(string(key), "\n\r") {
		return Change{}, errors.New("the disk key spans several lines; the console prompt takes one line")
	}
	plain := s.DiskKeyPath(host)
	hasPlain, hasSealed := exists(plain)
	if hasPlain && hasSealed {
		return Change{}, fmt.Errorf("both %s and %s exist; remove the stale one", plain, filepath.Base(plain)+SealedSuffix)
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return Change{}, fmt.Errorf("create key directory: %w", err)
	}
	_, hostSealed := exists(s.HostKeyPath(host))
	if hasSealed || (!hasPlain && hostSealed) {
		if len(recipients) == 0 {
			return Change{}, fmt.Errorf("%s is sealed: %w (it is needed to seal the new key)", plain+SealedSuffix, ErrNoIdentity)
		}
		data, err := encryptArmored(key, recipients)
		if err != nil {
			return Change{}, fmt.Errorf("encrypt disk key: %w", err)
		}
		if err := writeReplace(plain+SealedSuffix, data, 0o600); err != nil {
			return Change{}, err
		}
		got, err := s.decryptFile(plain + SealedSuffix)
		if err != nil {
			return Change{}, fmt.Errorf("%w (is the bot's own recipient among the recipients?)", err)
		}
		defer clear(got)
		if string(got) != string(key) {
			return Change{}, fmt.Errorf("%s did not read back as written", plain+SealedSuffix)
		}
		return Change{Path: plain + SealedSuffix, Action: "replaced"}, nil
	}
	if err := writeReplace(plain, key, 0o600); err != nil {
		return Change{}, err
	}
	return Change{Path: plain, Action: "replaced"}, nil
}

func trimOneNewline(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
	}
	return b
}

func encryptArmored(data []byte, recipients []age.Recipient) ([]byte, error) {
	var buf strings.Builder
	aw := armor.NewWriter(&buf)
	w, err := age.Encrypt(aw, recipients...)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(data); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	if err := aw.Close(); err != nil {
		return nil, err
	}
	return []byte(buf.String()), nil
}

// Unseal writes plaintext copies of host's keys into dir, under the key
// store's own file names, so the manual route (nix/scripts/bootstrap-nixos.sh
// -K dir) works with a sealed store: the SSH host key and its .pub, the user
// age identity, and the disk key and initrd host key (with its .pub) where
// the host has them. dir is created 0700 if missing and must not be
// readable by others if it exists; existing files in it are never replaced.
// The copies are 0600 (.pub files 0644). The caller tells the operator to
// delete dir afterwards.
func (s *Store) Unseal(ctx context.Context, host, dir string) ([]Change, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("unseal: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by group/others (mode %04o); use a private directory (chmod 700)", dir, fi.Mode().Perm())
	}
	type item struct {
		plain    string
		optional bool
	}
	items := []item{{s.HostKeyPath(host), false}, {s.UserKeyPath(host), false}, {s.DiskKeyPath(host), true}, {s.InitrdKeyPath(host), true}}
	var out []Change
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		if p, sealed := exists(it.plain); it.optional && !p && !sealed {
			continue
		}
		dest := filepath.Join(dir, filepath.Base(it.plain))
		sec, err := s.readPrivate(it.plain)
		if err != nil {
			out = append(out, Change{Path: dest, Err: err})
			continue
		}
		err = writeExclusive(dest, sec.Data, 0o600)
		clear(sec.Data)
		if err != nil {
			out = append(out, Change{Path: dest, Err: err})
			continue
		}
		out = append(out, Change{Path: dest, Action: "unsealed"})
		if it.plain == s.HostKeyPath(host) || it.plain == s.InitrdKeyPath(host) {
			out = append(out, copyPublic(it.plain+".pub", filepath.Join(dir, filepath.Base(it.plain)+".pub")))
		}
	}
	return out, nil
}

func copyPublic(src, dest string) Change {
	data, err := os.ReadFile(src)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("%s: %w", src, ErrNoKey)
		}
		return Change{Path: dest, Err: err}
	}
	if err := writeExclusive(dest, data, 0o644); err != nil {
		return Change{Path: dest, Err: err}
	}
	return Change{Path: dest, Action: "copied"}
}
