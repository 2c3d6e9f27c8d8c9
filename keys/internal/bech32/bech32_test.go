package bech32_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/nixdeploy/nixdeploy/keys/internal/bech32"
)

// The valid and invalid Bech32 strings of BIP-173's "Test vectors" section.
var bip173Valid = []string{
	"A12UEL5L",
	"a12uel5l",
	"an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
	"abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
	"11qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqc8247j",
	"split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
	"?1ezyfcl",
}

func TestBIP173Valid(t *testing.T) {
	for _, s := range bip173Valid {
		t.Run(s, func(t *testing.T) {
			hrp, data, err := bech32.Decode(s)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			got, err := bech32.Encode(hrp, data)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if got != s {
				t.Errorf("round trip = %q, want %q", got, s)
			}
			// A flipped data character must break the checksum.
			i := strings.LastIndexByte(s, '1') + 1
			flipped := s[:i] + string(s[i]^1) + s[i+1:]
			if _, _, err := bech32.Decode(flipped); err == nil {
				t.Errorf("Decode(%q) accepted a corrupted string", flipped)
			}
		})
	}
}

func TestBIP173Invalid(t *testing.T) {
	tests := []struct {
		name, s string
		want    error
	}{
		{"hrp character out of range (space)", "\x201nwldj5", bech32.ErrHRP},
		{"hrp character out of range (DEL)", "\x7f1axkwrx", bech32.ErrHRP},
		{"hrp character out of range (0x80)", "\x801eym55h", bech32.ErrHRP},
		{"overall max length exceeded", "an84characterslonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1569pvx", bech32.ErrTooLong},
		{"no separator character", "pzry9x0s0muk", bech32.ErrNoSeparator},
		{"empty hrp", "1pzry9x0s0muk", bech32.ErrNoSeparator},
		{"invalid data character", "x1b4n0q5v", bech32.ErrDataCharacter},
		{"too short checksum", "li1dgmt3", bech32.ErrNoSeparator},
		{"invalid character in checksum", "de1lg7wt\xff", bech32.ErrDataCharacter},
		{"checksum calculated with uppercase form of hrp", "A1G7SGD8", bech32.ErrChecksum},
		{"empty hrp, 1 data character", "10a06t8", bech32.ErrNoSeparator},
		{"empty hrp, checksum only", "1qzzfhee", bech32.ErrNoSeparator},
		{"mixed case", "A12uEL5L", bech32.ErrMixedCase},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := bech32.Decode(tt.s)
			if !errors.Is(err, tt.want) {
				t.Errorf("Decode(%q) = %v, want %v", tt.s, err, tt.want)
			}
		})
	}
}

// TestEncodeBytes pins the 8-bit interface: BIP-173's "abcdef" vector spells
// the data values 0…31 in order, which are these 20 bytes.
func TestEncodeBytes(t *testing.T) {
	data, _ := hex.DecodeString("00443214c74254b635cf84653a56d7c675be77df")
	got, err := bech32.Encode("abcdef", data)
	if err != nil {
		t.Fatal(err)
	}
	if want := "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw"; got != want {
		t.Errorf("Encode = %q, want %q", got, want)
	}
	up, err := bech32.Encode("ABCDEF", data)
	if err != nil {
		t.Fatal(err)
	}
	if up != strings.ToUpper(got) {
		t.Errorf("upper-case hrp gave %q", up)
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		hrp  string
		data []byte
	}{
		{"empty", "a", nil},
		{"one byte", "x", []byte{0xff}},
		{"age recipient size", "age", bytes.Repeat([]byte{0xa5}, 32)},
		{"age identity size, upper case", "AGE-SECRET-KEY-", bytes.Repeat([]byte{0x5a}, 32)},
		{"all byte values", "b", func() []byte {
			b := make([]byte, 40)
			for i := range b {
				b[i] = byte(i * 7)
			}
			return b
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := bech32.Encode(tt.hrp, tt.data)
			if err != nil {
				t.Fatal(err)
			}
			hrp, data, err := bech32.Decode(s)
			if err != nil {
				t.Fatalf("Decode(%q): %v", s, err)
			}
			if hrp != tt.hrp || !bytes.Equal(data, tt.data) {
				t.Errorf("round trip = %q %x, want %q %x", hrp, data, tt.hrp, tt.data)
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	tests := []struct {
		name string
		hrp  string
		data []byte
	}{
		{"empty hrp", "", nil},
		{"mixed case hrp", "Age", nil},
		{"control character in hrp", "a\x00", nil},
		{"too long", "a", make([]byte, 60)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := bech32.Encode(tt.hrp, tt.data); err == nil {
				t.Errorf("Encode = %q, want an error", s)
			}
		})
	}
}

func TestDecodeRejectsNonZeroPadding(t *testing.T) {
	// One 5-bit group of all ones is not a whole byte and its bits are not
	// zero padding; Encode can never produce it, so build it by hand.
	s := encode5("a", []byte{31})
	if _, _, err := bech32.Decode(s); !errors.Is(err, bech32.ErrPadding) {
		t.Errorf("Decode(%q) = %v, want ErrPadding", s, err)
	}
}

// encode5 spells raw 5-bit values with a valid checksum, computed by a
// separate transcription of the BIP-173 reference code.
func encode5(hrp string, values []byte) string {
	const charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
	gen := []uint32{0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3}
	var in []byte
	for i := 0; i < len(hrp); i++ {
		in = append(in, hrp[i]>>5)
	}
	in = append(in, 0)
	for i := 0; i < len(hrp); i++ {
		in = append(in, hrp[i]&31)
	}
	in = append(in, values...)
	in = append(in, 0, 0, 0, 0, 0, 0)
	chk := uint32(1)
	for _, v := range in {
		top := chk >> 25
		chk = (chk&0x1ffffff)<<5 ^ uint32(v)
		for i, g := range gen {
			if (top>>i)&1 == 1 {
				chk ^= g
			}
		}
	}
	chk ^= 1
	out := []byte(hrp + "1")
	for _, v := range values {
		out = append(out, charset[v])
	}
	for i := 0; i < 6; i++ {
		out = append(out, charset[(chk>>(5*(5-i)))&31])
	}
	return string(out)
}
