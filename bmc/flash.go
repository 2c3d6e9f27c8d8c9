package bmc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Image is what Flash writes to a node's eMMC.
type Image struct {
	// Name is the file name bmcd is told. A name ending in .xz is
	// decompressed on the BMC while it writes
	// (bmcd/src/streaming_data_service/data_transfer.rs,
	// with_decompression_support).
	Name string
	// Size is the exact byte count of Body; bmcd refuses an upload that
	// sends fewer (legacy.rs handle_file_upload, "missing … bytes").
	Size int64
	// SHA256 is the hash of Body as uploaded. bmcd checks the stream
	// against it and fails the flash on a mismatch (data_transfer.rs,
	// Sha256StreamValidator), so what was approved is what is written.
	SHA256 [32]byte
	// Body is read once, from the start.
	Body io.Reader
}

// Progress hears how far a flash has got; it must not block.
type Progress func(written, total int64)

// Flash writes img to slot node. It takes three calls, as tpi's
// handle_flash and handle_file_upload_v1_1 do (src/legacy_handler.rs):
//
//  1. GET opt=set&type=flash&node=N-1&file=NAME&length=SIZE&sha256=HEX,
//     answered with {"handle":H}, without the usual envelope
//     (legacy.rs handle_transfer_request returns the bare JSON text);
//  2. POST /api/bmc/upload/H, one multipart part with the image, which
//     must start within 10 s (streaming_data_service.rs,
//     cancel_request_on_timeout, "Send timeout");
//  3. GET opt=get&type=flash until it reports {"Done":…} or
//     {"Error":"…"}; while it writes it reports
//     {"Transferring":{"id":H,"size":…,"bytes_written":…}} (the serde form
//     of streaming_data_service.rs StreamingState and TransferContext).
//
// bmcd then reads the eMMC back and compares a CRC before it says Done
// (app/upgrade_worker.rs, try_validate_crc). The node is powered off for
// the write and left off; power it on to boot the new system.
func (c *Client) Flash(ctx context.Context, node int, img Image, progress Progress) error {
	call := fmt.Sprintf("flash node %d", node)
	if err := c.checkNode("flash", node); err != nil {
		return err
	}
	if img.Size <= 0 || img.Name == "" || img.Body == nil {
		return c.fail(call, errors.New("empty image"))
	}
	ctx, cancel := context.WithTimeout(ctx, c.o.FlashTimeout)
	defer cancel()
	handle, err := c.announce(ctx, node, img.Name, img.Size, img.SHA256)
	if err != nil {
		return c.fail(call, err)
	}
	if err := c.upload(ctx, handle, img); err != nil {
		return c.fail(call, err)
	}
	if err := c.waitFlashed(ctx, handle, progress); err != nil {
		return c.fail(call, err)
	}
	return nil
}

// upload streams the image as the one multipart part bmcd reads
// (legacy.rs handle_file_upload takes the first field; tpi names it
// "file"). The token was just used for step 1, and bmcd's expiry counts
// from the last use, so it is valid; a stream cannot be re-sent anyway.
func (c *Client) upload(ctx context.Context, handle uint32, img Image) error {
	c.mu.Lock()
	tok := c.token
	c.mu.Unlock()
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		part, err := mw.CreateFormFile("file", img.Name)
		if err == nil {
			_, err = io.Copy(part, io.LimitReader(img.Body, img.Size))
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url("/api/bmc/upload/"+strconv.FormatUint(uint64(handle), 10), nil), pr)
	if err != nil {
		pr.Close()
		return err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := c.http.Do(req)
	if err != nil {
		pr.Close()
		return fmt.Errorf("upload: %w", transportError(err))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusUnauthorized {
		c.dropToken(tok)
		return fmt.Errorf("upload: %w", ErrUnauthorized)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("upload: %w", &APIError{Status: resp.StatusCode, Message: resultMessage(body)})
	}
	return nil
}

// waitFlashed polls the transfer's state until it ends.
func (c *Client) waitFlashed(ctx context.Context, handle uint32, progress Progress) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the write: %w", ctx.Err())
		case <-t.C:
		}
		data, err := c.call(ctx, url.Values{"opt": {"get"}, "type": {"flash"}})
		if err != nil {
			return fmt.Errorf("flash status: %w", err)
		}
		done, err := flashState(data, handle, progress)
		if done || err != nil {
			return err
		}
		t.Reset(c.o.PollInterval)
	}
}

// flashState reads one status answer; done means the write finished.
func flashState(data []byte, handle uint32, progress Progress) (done bool, err error) {
	var s string
	if json.Unmarshal(data, &s) == nil {
		// "Ready": no transfer at all, so ours was lost (bmcd restarted).
		return false, fmt.Errorf("%w: the BMC has no transfer in progress (state %s)", ErrFlash, s)
	}
	var st map[string]json.RawMessage
	if err := json.Unmarshal(data, &st); err != nil {
		return false, fmt.Errorf("%w: flash state is not JSON: %.80q", ErrAPI, data)
	}
	if v, ok := st["Error"]; ok {
		var msg string
		_ = json.Unmarshal(v, &msg)
		return false, fmt.Errorf("%w: %s", ErrFlash, oneLine(msg))
	}
	if _, ok := st["Done"]; ok {
		return true, nil
	}
	if v, ok := st["Transferring"]; ok {
		var tr struct {
			ID           uint32 `json:"id"`
			Size         int64  `json:"size"`
			BytesWritten int64  `json:"bytes_written"`
		}
		if err := json.Unmarshal(v, &tr); err != nil {
			return false, fmt.Errorf("%w: bad transfer state: %v", ErrAPI, err)
		}
		if tr.ID != handle {
			return false, fmt.Errorf("%w: the BMC is running another transfer (#%d, ours #%d)", ErrFlash, tr.ID, handle)
		}
		if progress != nil {
			progress(tr.BytesWritten, tr.Size)
		}
		return false, nil
	}
	return false, fmt.Errorf("%w: unknown flash state %.80q", ErrAPI, data)
}
