package bmc

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
)

// Upload is a flash announced to bmcd whose image another machine
// uploads: the runner, which holds the image, streams it to the BMC with
// curl, so a multi-gigabyte image never passes through nixdeploy. It
// carries what that upload needs, a secret token among it.
type Upload struct {
	// Handle is bmcd's transfer handle; URL the upload address
	// (POST /api/bmc/upload/HANDLE, legacy.rs handle_file_upload).
	Handle uint32
	URL    string
	// Token is the bearer token for the upload. It is a secret: give it
	// to the uploader on stdin, never in an argument, and redact it.
	Token string
	// PubKeyPin is the pinned certificate's public key as curl's
	// --pinnedpubkey takes it: "sha256//" and the base64 SHA-256 of the
	// SubjectPublicKeyInfo. It comes from a handshake whose whole
	// certificate matched cert_sha256, so it pins the same BMC.
	PubKeyPin string
}

// StartFlash announces an image for slot node, the first of the three
// calls of Flash (GET opt=set&type=flash&node=N-1&file=NAME&length=SIZE&
// sha256=HEX, answered with the bare {"handle":H}; tpi
// src/legacy_handler.rs handle_flash, bmcd legacy.rs
// handle_transfer_request), and returns what the uploader needs. The
// upload must start within 10 s (streaming_data_service.rs,
// cancel_request_on_timeout); then WaitFlash.
func (c *Client) StartFlash(ctx context.Context, node int, name string, size int64, sum [32]byte) (Upload, error) {
	call := fmt.Sprintf("flash node %d", node)
	if err := c.checkNode("flash", node); err != nil {
		return Upload{}, err
	}
	if size <= 0 || name == "" {
		return Upload{}, c.fail(call, errors.New("empty image"))
	}
	handle, err := c.announce(ctx, node, name, size, sum)
	if err != nil {
		return Upload{}, c.fail(call, err)
	}
	c.mu.Lock()
	tok, spki := c.token, c.spki
	c.mu.Unlock()
	if tok == "" || len(spki) == 0 {
		return Upload{}, c.fail(call, fmt.Errorf("%w: no session for the upload", ErrAPI))
	}
	pin := sha256.Sum256(spki)
	return Upload{
		Handle:    handle,
		URL:       c.url("/api/bmc/upload/"+strconv.FormatUint(uint64(handle), 10), nil),
		Token:     tok,
		PubKeyPin: "sha256//" + base64.StdEncoding.EncodeToString(pin[:]),
	}, nil
}

// announce is Flash's first call; it returns the transfer handle.
func (c *Client) announce(ctx context.Context, node int, name string, size int64, sum [32]byte) (uint32, error) {
	data, err := c.call(ctx, url.Values{
		"opt": {"set"}, "type": {"flash"}, "node": {apiNode(node)},
		"file": {name}, "length": {strconv.FormatInt(size, 10)},
		"sha256": {hex.EncodeToString(sum[:])},
	})
	if err != nil {
		return 0, err
	}
	var h struct {
		Handle *uint32 `json:"handle"`
	}
	if err := json.Unmarshal(data, &h); err != nil || h.Handle == nil {
		return 0, fmt.Errorf("%w: no transfer handle in %.80q", ErrAPI, data)
	}
	return *h.Handle, nil
}

// WaitFlash polls the transfer started by StartFlash until bmcd reports
// it written and checked (Done) or failed, within FlashTimeout.
func (c *Client) WaitFlash(ctx context.Context, node int, handle uint32, progress Progress) error {
	ctx, cancel := context.WithTimeout(ctx, c.o.FlashTimeout)
	defer cancel()
	if err := c.waitFlashed(ctx, handle, progress); err != nil {
		return c.fail(fmt.Sprintf("flash node %d", node), err)
	}
	return nil
}

// StartFlash announces a flash of host's slot; see Client.StartFlash.
func (f *Fleet) StartFlash(ctx context.Context, host, name string, size int64, sum [32]byte) (Upload, error) {
	c, node, err := f.slot(host)
	if err != nil {
		return Upload{}, err
	}
	return c.StartFlash(ctx, node, name, size, sum)
}

// WaitFlash waits for host's flash; see Client.WaitFlash.
func (f *Fleet) WaitFlash(ctx context.Context, host string, handle uint32, progress Progress) error {
	c, node, err := f.slot(host)
	if err != nil {
		return err
	}
	return c.WaitFlash(ctx, node, handle, progress)
}
