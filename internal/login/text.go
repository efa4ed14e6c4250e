package login

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/gosan/iscsi"
)

// kv is one key=value pair. (pdu has its own codec for general use; the
// engine keeps this small one because it needs per-caller value limits and
// must never be lenient about NULs inside a value.)
type kv struct{ Key, Value string }

const (
	maxKeyLen = 63
	// maxValueLen bounds any single value in login text. RFC 7143 §6.1
	// limits most values to 255 bytes; CHAP_C/CHAP_R may be up to 1024
	// bytes of binary, that is 2050 characters in hex, or more in other
	// forms, so the engine allows 8192 and checks per key afterwards.
	maxValueLen = 8192
)

// parseText splits NUL-terminated key=value pairs. Empty strings between
// NULs are ignored, and a missing NUL after the last pair is tolerated.
func parseText(b []byte, maxValue int) ([]kv, error) {
	var out []kv
	for len(b) > 0 {
		i := indexNUL(b)
		var item []byte
		if i < 0 {
			item, b = b, nil
		} else {
			item, b = b[:i], b[i+1:]
		}
		if len(item) == 0 {
			continue
		}
		eq := -1
		for j, c := range item {
			if c == '=' {
				eq = j
				break
			}
		}
		if eq <= 0 {
			return nil, protoErr("text item %q has no key=value form", truncate(string(item), 64))
		}
		key := string(item[:eq])
		if len(key) > maxKeyLen || !validKey(key) {
			return nil, protoErr("bad key %q", truncate(key, 64))
		}
		if len(item)-eq-1 > maxValue {
			return nil, fmt.Errorf("%w: value of %s is %d bytes (limit %d)", iscsi.ErrTextTooLarge, key, len(item)-eq-1, maxValue)
		}
		out = append(out, kv{key, string(item[eq+1:])})
	}
	return out, nil
}

func indexNUL(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}

// validKey: RFC 7143 §6.1 key-name characters.
func validKey(k string) bool {
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '-', c == '+', c == '@', c == '_':
		default:
			return false
		}
	}
	return k != ""
}

func appendText(dst []byte, kvs ...kv) []byte {
	for _, p := range kvs {
		dst = append(dst, p.Key...)
		dst = append(dst, '=')
		dst = append(dst, p.Value...)
		dst = append(dst, 0)
	}
	return dst
}

// parseNumber parses an RFC 7143 numerical-value: decimal or 0x hex
// (base64 0b form accepted too, as large-numerical-value).
func parseNumber(v string) (uint64, error) {
	if len(v) > 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'X' || v[1] == 'b' || v[1] == 'B') {
		b, err := parseBinary(v)
		if err != nil {
			return 0, err
		}
		if len(b) > 8 {
			return 0, fmt.Errorf("number %q too large", truncate(v, 32))
		}
		var n uint64
		for _, c := range b {
			n = n<<8 | uint64(c)
		}
		return n, nil
	}
	if v == "" || len(v) > 20 {
		return 0, fmt.Errorf("bad number %q", truncate(v, 32))
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, fmt.Errorf("bad number %q", truncate(v, 32))
		}
	}
	return strconv.ParseUint(v, 10, 64)
}

// parseBinary decodes an RFC 7143 binary-value: 0x hex (odd digit count
// allowed, a leading zero nibble implied) or 0b base64.
func parseBinary(v string) ([]byte, error) {
	if len(v) < 3 || v[0] != '0' {
		return nil, fmt.Errorf("binary value %q lacks 0x or 0b prefix", truncate(v, 32))
	}
	body := v[2:]
	switch v[1] {
	case 'x', 'X':
		if len(body)%2 == 1 {
			body = "0" + body
		}
		return hex.DecodeString(body)
	case 'b', 'B':
		if b, err := base64.StdEncoding.DecodeString(body); err == nil {
			return b, nil
		}
		return base64.RawStdEncoding.DecodeString(strings.TrimRight(body, "="))
	}
	return nil, fmt.Errorf("binary value %q lacks 0x or 0b prefix", truncate(v, 32))
}

func formatHex(b []byte) string { return "0x" + hex.EncodeToString(b) }

func parseBoolValue(v string) (bool, bool) {
	switch v {
	case "Yes":
		return true, true
	case "No":
		return false, true
	}
	return false, false
}

func formatBool(b bool) string {
	if b {
		return "Yes"
	}
	return "No"
}

func splitList(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}
