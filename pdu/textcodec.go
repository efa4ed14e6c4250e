package pdu

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// Special values of text keys (RFC 7143 §6.2). The "Reject" value is
// ValueReject because Reject names the Reject PDU.
const (
	NotUnderstood = "NotUnderstood"
	Irrelevant    = "Irrelevant"
	ValueReject   = "Reject"
	None          = "None"

	ValueNotUnderstood = NotUnderstood
	ValueIrrelevant    = Irrelevant
)

// Text limits (RFC 7143 §6.1).
const (
	MaxKeyLength = 63
	// MaxValueLength is the default value limit of ParseText: large enough
	// for SendTargets responses and CHAP challenges.
	MaxValueLength = 8192
	// MaxSimpleValueLength is the RFC limit for most values (255 bytes).
	MaxSimpleValueLength = 255
)

// KV is one key=value pair.
type KV struct {
	Key, Value string
}

// TextError reports malformed text data or values.
type TextError struct {
	Key    string // the key concerned, if known (truncated to MaxKeyLength)
	Offset int    // byte offset of the pair in the data segment, or -1
	Reason string
}

func (e *TextError) Error() string {
	if e.Key != "" {
		return fmt.Sprintf("pdu: text key %q: %s", e.Key, e.Reason)
	}
	if e.Offset >= 0 {
		return fmt.Sprintf("pdu: text at offset %d: %s", e.Offset, e.Reason)
	}
	return "pdu: text: " + e.Reason
}

// AppendText appends the pairs as key=value\0 to dst.
func AppendText(dst []byte, kvs ...KV) []byte {
	for _, kv := range kvs {
		dst = append(dst, kv.Key...)
		dst = append(dst, '=')
		dst = append(dst, kv.Value...)
		dst = append(dst, 0)
	}
	return dst
}

// TextLimits bounds ParseText. Zero fields take the defaults
// (MaxKeyLength, MaxValueLength, no pair limit).
type TextLimits struct {
	MaxKeyLength   int
	MaxValueLength int
	MaxPairs       int
}

// ParseText parses NUL-terminated key=value pairs with the default limits.
// Empty entries (runs of NULs, e.g. padding) are skipped; an unterminated
// last pair is an error (a continued PDU sequence must be joined first).
func ParseText(src []byte) ([]KV, error) { return TextLimits{}.Parse(src) }

// Parse parses src like ParseText under the limits l.
func (l TextLimits) Parse(src []byte) ([]KV, error) {
	maxKey, maxVal := l.MaxKeyLength, l.MaxValueLength
	if maxKey <= 0 {
		maxKey = MaxKeyLength
	}
	if maxVal <= 0 {
		maxVal = MaxValueLength
	}
	var kvs []KV
	for off := 0; off < len(src); {
		end := indexByte(src[off:], 0)
		if end < 0 {
			return kvs, &TextError{Offset: off, Reason: "key=value pair not terminated by NUL"}
		}
		pair := src[off : off+end]
		if len(pair) == 0 {
			off++
			continue
		}
		eq := indexByte(pair, '=')
		if eq < 0 {
			return kvs, &TextError{Offset: off, Reason: "missing '='"}
		}
		key, val := pair[:eq], pair[eq+1:]
		if len(key) == 0 {
			return kvs, &TextError{Offset: off, Reason: "empty key"}
		}
		if len(key) > maxKey {
			return kvs, &TextError{Key: string(key[:maxKey]), Offset: off, Reason: fmt.Sprintf("key of %d bytes exceeds %d", len(key), maxKey)}
		}
		for _, c := range key {
			if !keyChar(c) {
				return kvs, &TextError{Key: string(key), Offset: off, Reason: fmt.Sprintf("invalid character %q in key", c)}
			}
		}
		if len(val) > maxVal {
			return kvs, &TextError{Key: string(key), Offset: off, Reason: fmt.Sprintf("value of %d bytes exceeds %d", len(val), maxVal)}
		}
		if l.MaxPairs > 0 && len(kvs) >= l.MaxPairs {
			return kvs, &TextError{Offset: off, Reason: fmt.Sprintf("more than %d pairs", l.MaxPairs)}
		}
		kvs = append(kvs, KV{Key: string(key), Value: string(val)})
		off += end + 1
	}
	return kvs, nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// keyChar reports the characters RFC 7143 §6.1 allows in key names
// (standard-label and X-/X# extension keys).
func keyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '-' || c == '+' || c == '@' || c == '_' || c == '#'
}

// ParseNumber parses a numerical value (RFC 7143 §6.1): a decimal
// constant, a hex constant with 0x/0X prefix, or a base64 constant with
// 0b/0B prefix, up to 64 bits.
func ParseNumber(v string) (uint64, error) {
	if len(v) >= 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'X' || v[1] == 'b' || v[1] == 'B') {
		b, err := ParseBinary(v)
		if err != nil {
			return 0, err
		}
		// Leading zero bytes do not count against the 64-bit limit.
		for len(b) > 8 && b[0] == 0 {
			b = b[1:]
		}
		if len(b) > 8 {
			return 0, &TextError{Offset: -1, Reason: fmt.Sprintf("number %.20q... exceeds 64 bits", v)}
		}
		var n uint64
		for _, c := range b {
			n = n<<8 | uint64(c)
		}
		return n, nil
	}
	if v == "" {
		return 0, &TextError{Offset: -1, Reason: "empty number"}
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, &TextError{Offset: -1, Reason: fmt.Sprintf("invalid decimal constant %.20q", v)}
		}
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, &TextError{Offset: -1, Reason: fmt.Sprintf("decimal constant %.20q exceeds 64 bits", v)}
	}
	return n, nil
}

// ParseBinary parses a binary value: hex with a 0x/0X prefix (an odd
// number of digits gets an implied leading zero) or base64 with a 0b/0B
// prefix (standard alphabet, padding required).
func ParseBinary(v string) ([]byte, error) {
	if len(v) < 3 || v[0] != '0' {
		return nil, &TextError{Offset: -1, Reason: "binary value needs a 0x or 0b prefix and digits"}
	}
	body := v[2:]
	switch v[1] {
	case 'x', 'X':
		if len(body)%2 == 1 {
			b := make([]byte, len(body)/2+1)
			if _, err := hex.Decode(b[1:], []byte(body[1:])); err != nil {
				return nil, &TextError{Offset: -1, Reason: "invalid hex constant"}
			}
			lo, ok := unhex(body[0])
			if !ok {
				return nil, &TextError{Offset: -1, Reason: "invalid hex constant"}
			}
			b[0] = lo
			return b, nil
		}
		b, err := hex.DecodeString(body)
		if err != nil {
			return nil, &TextError{Offset: -1, Reason: "invalid hex constant"}
		}
		return b, nil
	case 'b', 'B':
		for i := 0; i < len(body); i++ {
			if c := body[i]; !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=') {
				// encoding/base64 would silently skip CR and LF.
				return nil, &TextError{Offset: -1, Reason: "invalid base64 constant"}
			}
		}
		b, err := base64.StdEncoding.DecodeString(body)
		if err != nil {
			return nil, &TextError{Offset: -1, Reason: "invalid base64 constant"}
		}
		return b, nil
	}
	return nil, &TextError{Offset: -1, Reason: "binary value needs a 0x or 0b prefix"}
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// FormatHex formats b as a 0x-prefixed lower-case hex constant.
func FormatHex(b []byte) string { return "0x" + hex.EncodeToString(b) }

// FormatBase64 formats b as a 0b-prefixed base64 constant.
func FormatBase64(b []byte) string { return "0b" + base64.StdEncoding.EncodeToString(b) }

// FormatNumber formats n as a decimal constant.
func FormatNumber(n uint64) string { return strconv.FormatUint(n, 10) }

// ParseBool parses "Yes" or "No".
func ParseBool(v string) (bool, error) {
	switch v {
	case "Yes":
		return true, nil
	case "No":
		return false, nil
	}
	return false, &TextError{Offset: -1, Reason: fmt.Sprintf("boolean value %.20q is neither Yes nor No", v)}
}

// FormatBool returns "Yes" or "No".
func FormatBool(b bool) string {
	if b {
		return "Yes"
	}
	return "No"
}

// SplitList splits a comma-separated list value. An empty value gives nil.
func SplitList(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}
