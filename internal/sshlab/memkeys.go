package sshlab

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"slices"

	"golang.org/x/crypto/ssh"
)

// MemKeys is an in-memory key store with the methods the deployer's
// HostKeys interface wants, for fleets that live in the test process
// (internal/simfleet): host → its OpenSSH private key, the public key
// derived from it. A host's initrd key is the entry "<host>-initrd"; its
// disk key is DiskKeys(host) when set.
type MemKeys struct {
	Private map[string][]byte
	// DiskKeys, optional, is a host's disk passphrase.
	DiskKeys func(host string) []byte
}

// NewKey returns a fresh ed25519 host key as a signer and as the OpenSSH
// PEM the key store holds.
func NewKey() (ssh.Signer, []byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return nil, nil, err
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, nil, err
	}
	return s, pem.EncodeToMemory(block), nil
}

// HostPrivateKey returns a copy of host's private key.
func (k MemKeys) HostPrivateKey(host string) ([]byte, error) {
	b, ok := k.Private[host]
	if !ok {
		return nil, fmt.Errorf("no key for %s", host)
	}
	return slices.Clone(b), nil
}

// HostPublicKey derives host's public key from its private key.
func (k MemKeys) HostPublicKey(host string) (ssh.PublicKey, error) {
	b, err := k.HostPrivateKey(host)
	if err != nil {
		return nil, err
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, err
	}
	return s.PublicKey(), nil
}

// DiskKey is DiskKeys(host).
func (k MemKeys) DiskKey(host string) ([]byte, error) {
	if k.DiskKeys == nil {
		return nil, fmt.Errorf("no disk key for %s", host)
	}
	return k.DiskKeys(host), nil
}

// InitrdHostPrivateKey is the entry "<host>-initrd".
func (k MemKeys) InitrdHostPrivateKey(host string) ([]byte, error) {
	return k.HostPrivateKey(host + "-initrd")
}

// InitrdHostPublicKey is the public key of the entry "<host>-initrd".
func (k MemKeys) InitrdHostPublicKey(host string) (ssh.PublicKey, error) {
	return k.HostPublicKey(host + "-initrd")
}
