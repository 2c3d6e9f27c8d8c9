package bmc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/nixdeploy/nixdeploy"
)

// FlashPlan is what a flash approval is bound to: which node, through
// which board and slot, and exactly which image (name, size, SHA-256).
// Flashing wipes the node's eMMC, so an approval for one image or node
// must not cover another.
type FlashPlan struct {
	Host   string
	Board  string
	Slot   int
	Image  string
	Size   int64
	SHA256 [32]byte
}

// Fingerprint is the plan's identity for an approval: a change to any
// field gives a different fingerprint.
func (p FlashPlan) Fingerprint() string {
	sum := sha256.Sum256(fmt.Appendf(nil, "flash\x00%s\x00%s\x00%d\x00%s\x00%d\x00%x", p.Host, p.Board, p.Slot, p.Image, p.Size, p.SHA256))
	return hex.EncodeToString(sum[:])
}

// ErrImageChanged: the image is not the one the approval names.
var ErrImageChanged = errors.New("the image differs from the approved one")

// Opener opens the image from its start; it is called twice, once to
// hash it and once to upload it.
type Opener func() (io.ReadCloser, error)

// PlanFlash reads the image once to bind a plan to its size and SHA-256.
func (f *Fleet) PlanFlash(host, name string, open Opener) (FlashPlan, error) {
	h, ok := f.cfg.Host(host)
	if !ok {
		return FlashPlan{}, fmt.Errorf("%w: %s", nixdeploy.ErrUnknownHost, host)
	}
	if h.BMC == "" {
		return FlashPlan{}, fmt.Errorf("%w: %s has no bmc in the fleet config", nixdeploy.ErrInvalidInput, host)
	}
	size, sum, err := hashImage(open)
	if err != nil {
		return FlashPlan{}, err
	}
	return FlashPlan{Host: host, Board: h.BMC, Slot: h.BMCNode, Image: name, Size: size, SHA256: sum}, nil
}

// Flash writes the approved plan's image. The image is hashed again
// first and refused unless it is byte for byte the approved one, so a
// file swapped after the approval is never sent; bmcd checks the upload
// against the approved hash as well (see Image.SHA256). The host's board
// and slot must still be the plan's.
func (f *Fleet) Flash(ctx context.Context, plan FlashPlan, open Opener, progress Progress) error {
	c, slot, err := f.slot(plan.Host)
	if err != nil {
		return err
	}
	if h, _ := f.cfg.Host(plan.Host); h.BMC != plan.Board || slot != plan.Slot {
		return fmt.Errorf("%w: %s is now in slot %d of %s, the approval was for slot %d of %s", ErrImageChanged, plan.Host, slot, h.BMC, plan.Slot, plan.Board)
	}
	size, sum, err := hashImage(open)
	if err != nil {
		return err
	}
	if size != plan.Size || sum != plan.SHA256 {
		return fmt.Errorf("%w: %s now has %d bytes and SHA-256 %x, the approval was for %d bytes and %x", ErrImageChanged, plan.Image, size, sum, plan.Size, plan.SHA256)
	}
	r, err := open()
	if err != nil {
		return fmt.Errorf("open image: %w", err)
	}
	defer r.Close()
	return c.Flash(ctx, slot, Image{Name: plan.Image, Size: plan.Size, SHA256: plan.SHA256, Body: r}, progress)
}

func hashImage(open Opener) (int64, [32]byte, error) {
	r, err := open()
	if err != nil {
		return 0, [32]byte{}, fmt.Errorf("open image: %w", err)
	}
	defer r.Close()
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return 0, [32]byte{}, fmt.Errorf("read image: %w", err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return n, sum, nil
}
