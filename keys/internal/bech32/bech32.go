// Package bech32 implements the Bech32 encoding of BIP-173, the text form of
// age recipients ("age1…") and identities ("AGE-SECRET-KEY-1…").
//
// It follows the BIP-173 reference, including the 90-character limit, which
// every native X25519 age key fits. Data is given and returned as 8-bit bytes;
// the 5-bit regrouping is internal.
package bech32

import (
	"errors"
	"fmt"
	"strings"
)

// MaxLength is the longest string BIP-173 allows.
const MaxLength = 90

const charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"

// Errors returned by Decode. They never quote the input: a Bech32 string may
// be a secret key.
var (
	ErrMixedCase     = errors.New("bech32: mixed case")
	ErrTooLong       = errors.New("bech32: longer than 90 characters")
	ErrNoSeparator   = errors.New("bech32: missing or misplaced separator '1'")
	ErrHRP           = errors.New("bech32: invalid character in human-readable part")
	ErrDataCharacter = errors.New("bech32: invalid character in data part")
	ErrChecksum      = errors.New("bech32: invalid checksum")
	ErrPadding       = errors.New("bech32: invalid padding")
)

func polymod(values []byte) uint32 {
	gen := [5]uint32{0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3}
	chk := uint32(1)
	for _, v := range values {
		top := chk >> 25
		chk = (chk&0x1ffffff)<<5 ^ uint32(v)
		for i, g := range gen {
			if (top>>i)&1 == 1 {
				chk ^= g
			}
		}
	}
	return chk
}

// hrpExpand expects a lower-case hrp: the checksum is defined over it.
func hrpExpand(hrp string) []byte {
	out := make([]byte, 0, 2*len(hrp)+1)
	for i := 0; i < len(hrp); i++ {
		out = append(out, hrp[i]>>5)
	}
	out = append(out, 0)
	for i := 0; i < len(hrp); i++ {
		out = append(out, hrp[i]&31)
	}
	return out
}

func checksum(hrp string, data []byte) []byte {
	values := append(hrpExpand(hrp), data...)
	values = append(values, 0, 0, 0, 0, 0, 0)
	mod := polymod(values) ^ 1
	out := make([]byte, 6)
	for i := range out {
		out[i] = byte(mod>>(5*(5-i))) & 31
	}
	return out
}

// regroup converts between 8-bit and 5-bit groups. Encoding pads the last
// group with zero bits; decoding rejects anything but that padding, so every
// string has exactly one decoding.
func regroup(data []byte, from, to uint, pad bool) ([]byte, error) {
	var acc uint32
	var bits uint
	maxv := uint32(1)<<to - 1
	out := make([]byte, 0, len(data)*int(from)/int(to)+1)
	for _, v := range data {
		acc = acc<<from | uint32(v)
		bits += from
		for bits >= to {
			bits -= to
			out = append(out, byte(acc>>bits&maxv))
		}
	}
	if pad {
		if bits > 0 {
			out = append(out, byte(acc<<(to-bits)&maxv))
		}
	} else if bits >= from || acc<<(to-bits)&maxv != 0 {
		return nil, ErrPadding
	}
	return out, nil
}

func validHRP(hrp string) bool {
	if hrp == "" {
		return false
	}
	for i := 0; i < len(hrp); i++ {
		if hrp[i] < 33 || hrp[i] > 126 {
			return false
		}
	}
	return true
}

// Encode returns the Bech32 string of data under hrp. The result is upper
// case when hrp is upper case (as for "AGE-SECRET-KEY-") and lower case
// otherwise.
func Encode(hrp string, data []byte) (string, error) {
	if !validHRP(hrp) {
		return "", ErrHRP
	}
	lower, upper := asciiLower(hrp), asciiUpper(hrp)
	if hrp != lower && hrp != upper {
		return "", ErrMixedCase
	}
	values, err := regroup(data, 8, 5, true)
	if err != nil {
		return "", err
	}
	if n := len(hrp) + 1 + len(values) + 6; n > MaxLength {
		return "", fmt.Errorf("bech32: encoding would be %d characters, more than %d", n, MaxLength)
	}
	var b strings.Builder
	b.WriteString(lower)
	b.WriteByte('1')
	for _, v := range append(values, checksum(lower, values)...) {
		b.WriteByte(charset[v])
	}
	if hrp == lower {
		return b.String(), nil
	}
	return asciiUpper(b.String()), nil
}

// Decode parses a Bech32 string. The returned hrp has the case of s.
func Decode(s string) (hrp string, data []byte, err error) {
	if len(s) > MaxLength {
		return "", nil, ErrTooLong
	}
	lower := asciiLower(s)
	if s != lower && s != asciiUpper(s) {
		return "", nil, ErrMixedCase
	}
	pos := strings.LastIndexByte(lower, '1')
	if pos < 1 || pos+7 > len(lower) {
		return "", nil, ErrNoSeparator
	}
	if !validHRP(s[:pos]) {
		return "", nil, ErrHRP
	}
	values := make([]byte, 0, len(s)-pos-1)
	for i := pos + 1; i < len(lower); i++ {
		d := strings.IndexByte(charset, lower[i])
		if d < 0 {
			return "", nil, ErrDataCharacter
		}
		values = append(values, byte(d))
	}
	if polymod(append(hrpExpand(lower[:pos]), values...)) != 1 {
		return "", nil, ErrChecksum
	}
	data, err = regroup(values[:len(values)-6], 5, 8, false)
	if err != nil {
		return "", nil, err
	}
	return s[:pos], data, nil
}

// asciiLower and asciiUpper fold ASCII letters only. The strings package
// would also rewrite invalid UTF-8, shifting byte offsets between s and its
// folded form.
func asciiLower(s string) string { return asciiMap(s, 'A', 'Z', 'a'-'A') }

func asciiUpper(s string) string { return asciiMap(s, 'a', 'z', -('a' - 'A')) }

func asciiMap(s string, lo, hi byte, delta int) string {
	b := []byte(s)
	for i, c := range b {
		if c >= lo && c <= hi {
			b[i] = byte(int(c) + delta)
		}
	}
	return string(b)
}
