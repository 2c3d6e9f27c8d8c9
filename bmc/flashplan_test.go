package bmc_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/nixdeploy/nixdeploy/bmc"
)

func opener(b *[]byte) bmc.Opener {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(*b)), nil }
}

// TestFlashApprovalBoundToImage: an approval names the image's hash and
// the node; a different image voids it before anything reaches the BMC.
func TestFlashApprovalBoundToImage(t *testing.T) {
	n := &node{up: make(chan struct{})}
	fleet, f := recoveryFleet(t, n)
	img := bytes.Repeat([]byte("staging "), 4096)
	plan, err := fleet.PlanFlash("rk1-node3", "staging.img", opener(&img))
	if err != nil {
		t.Fatal(err)
	}
	if plan.Board != "turingpi" || plan.Slot != 3 || plan.Size != int64(len(img)) {
		t.Fatalf("plan %+v", plan)
	}
	approved := plan.Fingerprint()

	// The file changes after the approval.
	swapped := append([]byte(nil), img...)
	swapped[100] ^= 1
	before := len(f.Requests())
	err = fleet.Flash(t.Context(), plan, opener(&swapped), nil)
	if !errors.Is(err, bmc.ErrImageChanged) {
		t.Fatalf("flash of a changed image: %v, want ErrImageChanged", err)
	}
	if len(f.Requests()) != before || f.Flashed(3) != nil {
		t.Error("a changed image reached the BMC")
	}
	// A plan for the changed image, or another node, is another approval.
	other, err := fleet.PlanFlash("rk1-node3", "staging.img", opener(&swapped))
	if err != nil {
		t.Fatal(err)
	}
	if other.Fingerprint() == approved {
		t.Error("a different image has the approved fingerprint")
	}
	moved := plan
	moved.Slot = 2
	if moved.Fingerprint() == approved {
		t.Error("another slot has the approved fingerprint")
	}
	if err := fleet.Flash(t.Context(), moved, opener(&img), nil); !errors.Is(err, bmc.ErrImageChanged) {
		t.Errorf("flash with a plan for another slot: %v", err)
	}

	// The approved image flashes.
	if err := fleet.Flash(t.Context(), plan, opener(&img), nil); err != nil {
		t.Fatal(err)
	}
	if got := f.Flashed(3); got == nil || !bytes.Equal(got.Data, img) || got.SHA256 != plan.SHA256 {
		t.Errorf("flashed %+v", got)
	}
}
