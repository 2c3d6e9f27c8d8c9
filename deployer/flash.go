package deployer

import (
	"context"
	"encoding/hex"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/bmc"
)

// Flashing a Turing Pi node's eMMC (nixdeploy.ActionFlash): the image is
// a file on the runner. It is hashed there when the flash is requested
// (Resolve), and the approval is bound to that hash through the plan's
// fingerprint. The run copies the image into its private temp directory,
// hashes the copy and refuses it unless it is byte for byte the approved
// one (check-image); only then does the bot announce the image to the BMC,
// and curl on the runner streams the copy to the BMC. The image never
// passes through nixdeploy, and the bytes uploaded are the bytes hashed.

// Flasher is what a flash needs of the BMC besides power (Options.BMC
// must implement it too); *bmc.Fleet does.
type Flasher interface {
	// StartFlash announces the image for host's slot and returns where
	// and how to upload it.
	StartFlash(ctx context.Context, host, name string, size int64, sum [32]byte) (bmc.Upload, error)
	// WaitFlash waits until the BMC has written and checked it.
	WaitFlash(ctx context.Context, host string, handle uint32, progress bmc.Progress) error
}

// Flash step kinds.
const (
	// KindImage hashes the staged image and refuses one other than the
	// approved.
	KindImage Kind = "image"
	// KindFlash announces the image to the BMC, uploads it from the
	// runner and waits for the write.
	KindFlash Kind = "flash"
)

// FlashImage is the image path of a flash plan, filled from the lock.
const FlashImage = "<image>"

// stagedImage is the image's copy in the run directory.
const stagedImage = "image"

// ImageChangedError: the image on the runner is not the approved one.
type ImageChangedError struct {
	Host, Image       string
	Got, Want         string // hex SHA-256
	GotSize, WantSize int64
}

func (e *ImageChangedError) Error() string {
	return fmt.Sprintf("%v: the image %s now has %d bytes and SHA-256 %s, the approval was for %d bytes and %s; nothing was flashed to %s",
		nixdeploy.ErrPlanChanged, e.Image, e.GotSize, e.Got, e.WantSize, e.Want, e.Host)
}

// Is makes errors.Is(err, nixdeploy.ErrPlanChanged) hold.
func (e *ImageChangedError) Is(target error) bool { return target == nixdeploy.ErrPlanChanged }

// UserMessage is the sentence people see.
func (e *ImageChangedError) UserMessage() string {
	return fmt.Sprintf("the image %s on the runner changed after the flash of %s was approved (SHA-256 now %.12s…, approved %.12s…), so nothing was written to its eMMC; request the flash again",
		e.Image, e.Host, e.Got, e.Want)
}

// flashPlan is the plan of ActionFlash on h.
func (d *Deployer) flashPlan(h nixdeploy.Host) (*Plan, error) {
	if h.BMC == "" {
		return nil, fmt.Errorf("%w: %s has no bmc in the fleet config, so it cannot be flashed", nixdeploy.ErrInvalidInput, h.Name)
	}
	t := d.opts.Timeouts
	staged := TempDir + "/" + stagedImage
	p := &Plan{Host: h, Action: nixdeploy.ActionFlash, Steps: []Step{
		{Name: "connect", Kind: KindConnect, Where: WhereBot, Timeout: t.Command},
		{Name: "mktemp", Kind: KindTempDir, Where: WhereRunner, Argv: []string{"mktemp", "-d"}, Timeout: t.Command},
		{Name: "stage-image", Kind: KindCommand, Where: WhereRunner, Argv: []string{"cp", "--", FlashImage, staged}, Timeout: t.Rebuild},
		{Name: "check-image", Kind: KindImage, Where: WhereRunner, Timeout: t.Rebuild},
		{Name: "flash", Kind: KindFlash, Where: WhereRunner, Timeout: t.Install, Wipes: true},
		{Name: "remove-tmp", Kind: KindCommand, Where: WhereRunner, Argv: []string{"rm", "-rf", "--", TempDir}, Timeout: t.Command, Cleanup: true},
	}}
	p.Notes = append(p.Notes,
		fmt.Sprintf("writes the image to the eMMC of %s through the BMC %s (slot %d), whatever it holds now", h.Name, h.BMC, h.BMCNode),
		"the image is copied into the run directory on the runner and hashed there; only the approved SHA-256 is uploaded, by curl on the runner straight to the BMC",
		"the BMC leaves the node off after writing; nixdeploy then switches it on")
	return p, nil
}

// resolveFlash hashes the requested image on the runner: the flash's
// approval is bound to its size and SHA-256.
func (d *Deployer) resolveFlash(ctx context.Context, ex executor, dep nixdeploy.Deployment) (*nixdeploy.Lock, error) {
	img := dep.Image
	if img == "" && dep.Lock != nil {
		img = dep.Lock.Image
	}
	if !nixdeploy.ValidImagePath(img) {
		return nil, fmt.Errorf("%w: the image %q must be an absolute path on the runner", nixdeploy.ErrInvalidInput, img)
	}
	size, sum, err := imageOn(ctx, ex, img)
	if err != nil {
		return nil, err
	}
	return &nixdeploy.Lock{Image: img, ImageSize: size, ImageSHA256: sum}, nil
}

// imageOn reads the size and SHA-256 of file on ex.
func imageOn(ctx context.Context, ex executor, file string) (int64, string, error) {
	out, err := captureOn(ctx, ex, []string{"stat", "-L", "-c", "%s", "--", file})
	if err != nil {
		return 0, "", fmt.Errorf("read the size of the image %s on the runner: %w", file, err)
	}
	size, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil || size <= 0 {
		return 0, "", fmt.Errorf("the image %s on the runner is empty or not a file (stat printed %q)", file, truncate(strings.TrimSpace(string(out)), 60))
	}
	out, err = captureOn(ctx, ex, []string{"sha256sum", "-b", "--", file})
	if err != nil {
		return 0, "", fmt.Errorf("hash the image %s on the runner: %w", file, err)
	}
	sum, _, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	if b, err := hex.DecodeString(sum); err != nil || len(b) != 32 {
		return 0, "", fmt.Errorf("sha256sum printed %q for the image %s", truncate(string(out), 80), file)
	}
	return size, sum, nil
}

// checkImage hashes the staged copy and refuses it unless it is the
// approved image.
func (h *hostRun) checkImage(ctx context.Context, st Step) error {
	l := h.locked
	if l == nil || l.Image == "" || l.ImageSHA256 == "" {
		return fmt.Errorf("%w: this flash has no resolved image; request it again", nixdeploy.ErrInvalidInput)
	}
	ex, err := h.runnerExec(ctx)
	if err != nil {
		return err
	}
	size, sum, err := imageOn(ctx, ex, h.tmp+"/"+stagedImage)
	if err != nil {
		return err
	}
	if size != l.ImageSize || sum != l.ImageSHA256 {
		return &ImageChangedError{Host: h.host.Name, Image: l.Image, Got: sum, Want: l.ImageSHA256, GotSize: size, WantSize: l.ImageSize}
	}
	h.em.event(h.host.Name, st.Name, "the staged image is the approved one: %d bytes, SHA-256 %s", size, sum)
	return nil
}

// flash writes the staged image through the host's BMC.
func (h *hostRun) flash(ctx context.Context, st Step) error {
	name := h.host.Name
	fl, ok := h.d.opts.BMC.(Flasher)
	if !ok || h.d.opts.BMC == nil {
		return fmt.Errorf("%w: no Turing Pi BMC is wired into this nixdeploy, so %s cannot be flashed", nixdeploy.ErrInvalidInput, name)
	}
	l := h.locked
	raw, err := hex.DecodeString(l.ImageSHA256)
	if err != nil || len(raw) != 32 {
		return fmt.Errorf("%w: the approved image hash %q is not a SHA-256", nixdeploy.ErrInvalidInput, l.ImageSHA256)
	}
	var sum [32]byte
	copy(sum[:], raw)
	file := path.Base(l.Image)
	up, err := fl.StartFlash(ctx, name, file, l.ImageSize, sum)
	if err != nil {
		return fmt.Errorf("announce the image to the BMC: %w", err)
	}
	h.red.add(up.Token)
	h.em.event(name, st.Name, "the BMC %s accepted %s (%d bytes) for slot %d as transfer %d; uploading it from the runner", h.host.BMC, file, l.ImageSize, h.host.BMCNode, up.Handle)
	// --insecure turns off only curl's CA and host name checks, which
	// bmcd's self-signed, soon-expired certificate fails; --pinnedpubkey
	// is still enforced with it (curl docs/cmdline-opts/pinnedpubkey.d:
	// "independent of option --insecure … the peer is still verified by
	// public key"; curl test 2048), and the key was taken from a
	// handshake that matched cert_sha256. -H @- reads the token from
	// stdin (curl 7.55), so it is in no argument list. -F streams the
	// file as the one multipart field bmcd reads (tpi
	// handle_file_upload_v1_1 names it "file").
	argv := []string{"curl", "--fail", "--silent", "--show-error", "--noproxy", "*",
		"--insecure", "--pinnedpubkey", up.PubKeyPin,
		"--header", "@-", "--form", "file=@" + h.tmp + "/" + stagedImage + ";filename=" + file, up.URL}
	h.em.event(name, st.Name, "upload on runner: %s", shellJoin(argv))
	ex, err := h.runnerExec(ctx)
	if err != nil {
		return err
	}
	c := h.cmd(st, argv, strings.NewReader("Authorization: Bearer "+up.Token+"\n"), nil)
	if err := ex.run(ctx, c); err != nil {
		return fmt.Errorf("upload the image to the BMC: %w", err)
	}
	last := -1
	err = fl.WaitFlash(ctx, name, up.Handle, func(written, total int64) {
		if total <= 0 {
			return
		}
		if pct := int(written * 100 / total); pct/10 != last/10 {
			last = pct
			h.em.event(name, st.Name, "the BMC has written %d%% of %s", pct, file)
		}
	})
	if err != nil {
		return fmt.Errorf("write the eMMC: %w", err)
	}
	h.em.event(name, st.Name, "the BMC wrote %s to the eMMC of %s and checked it", file, name)
	state, err := h.d.opts.BMC.Power(ctx, name, nixdeploy.PowerOn)
	if err != nil {
		return fmt.Errorf("switch %s on after flashing: %w", name, err)
	}
	h.em.event(name, st.Name, "switched %s on to boot the new image (it is %s now)", name, state)
	return nil
}
