package pdu

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTextRoundTrip(t *testing.T) {
	kvs := []KV{{"InitiatorName", "iqn.2024-01.io.gosan:node1"}, {"AuthMethod", "CHAP,None"}, {"X-com.example.Key", ""}, {"X#vendor", "a=b"}}
	b := AppendText(nil, kvs...)
	assert.Equal(t, "InitiatorName=iqn.2024-01.io.gosan:node1\x00AuthMethod=CHAP,None\x00X-com.example.Key=\x00X#vendor=a=b\x00", string(b))
	got, err := ParseText(b)
	require.NoError(t, err)
	assert.Equal(t, kvs, got)
	// Padding NULs after the last pair are skipped.
	got, err = ParseText(append(b, 0, 0, 0))
	require.NoError(t, err)
	assert.Equal(t, kvs, got)
	got, err = ParseText(nil)
	require.NoError(t, err)
	assert.Empty(t, got)
}

func TestParseTextErrors(t *testing.T) {
	tests := []struct {
		name, in, reason string
	}{
		{"no NUL", "A=b", "not terminated"},
		{"no equals", "Ab\x00", "missing '='"},
		{"empty key", "=b\x00", "empty key"},
		{"long key", strings.Repeat("K", 64) + "=v\x00", "key of 64 bytes"},
		{"bad key char", "A b=c\x00", "invalid character"},
		{"long value", "K=" + strings.Repeat("v", 8193) + "\x00", "value of 8193 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseText([]byte(tt.in))
			var te *TextError
			require.ErrorAs(t, err, &te)
			assert.Contains(t, te.Error(), tt.reason)
		})
	}
	// Limits are configurable.
	_, err := TextLimits{MaxValueLength: 255}.Parse([]byte("K=" + strings.Repeat("v", 256) + "\x00"))
	assert.Error(t, err)
	_, err = TextLimits{MaxKeyLength: 4}.Parse([]byte("Key5x=1\x00"))
	assert.Error(t, err)
	_, err = TextLimits{MaxPairs: 1}.Parse([]byte("A=1\x00B=2\x00"))
	assert.ErrorContains(t, err, "more than 1 pairs")
	// Exactly at the limits is fine.
	_, err = ParseText([]byte(strings.Repeat("K", 63) + "=" + strings.Repeat("v", 8192) + "\x00"))
	assert.NoError(t, err)
}

func TestParseNumber(t *testing.T) {
	tests := []struct {
		in      string
		want    uint64
		wantErr bool
	}{
		{"0", 0, false},
		{"8192", 8192, false},
		{"18446744073709551615", 1<<64 - 1, false},
		{"18446744073709551616", 0, true},
		{"0x2000", 8192, false},
		{"0X2000", 8192, false},
		{"0xfff", 0xfff, false},
		{"0x00000000000000000001", 1, false},
		{"0x10000000000000000", 0, true},
		{"0bIAA=", 0x2000, false},
		{"0BAQID", 0x010203, false},
		{"0b!!", 0, true},
		{"", 0, true},
		{"-1", 0, true},
		{"+1", 0, true},
		{"12a", 0, true},
		{"0x", 0, true},
		{"0xzz", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseNumber(tt.in)
		if tt.wantErr {
			var te *TextError
			assert.ErrorAs(t, err, &te, "ParseNumber(%q)", tt.in)
			continue
		}
		require.NoError(t, err, "ParseNumber(%q)", tt.in)
		assert.Equal(t, tt.want, got, "ParseNumber(%q)", tt.in)
	}
	assert.Equal(t, "65536", FormatNumber(65536))
}

func TestBinaryValues(t *testing.T) {
	b := []byte{0xde, 0xad, 0xbe, 0xef, 0x00, 0x01}
	assert.Equal(t, "0xdeadbeef0001", FormatHex(b))
	assert.Equal(t, "0b3q2+7wAB", FormatBase64(b))
	for _, s := range []string{FormatHex(b), FormatBase64(b), "0XDEADBEEF0001", "0B3q2+7wAB"} {
		got, err := ParseBinary(s)
		require.NoError(t, err, s)
		assert.Equal(t, b, got, s)
	}
	got, err := ParseBinary("0xabc") // odd digit count: leading zero nibble
	require.NoError(t, err)
	assert.Equal(t, []byte{0x0a, 0xbc}, got)
	for _, bad := range []string{"", "0x", "0b", "0B\n", "0bAQ\r\nID", "123", "0xg0", "0xgab", "0b===", "0q12", "1x12"} {
		_, err := ParseBinary(bad)
		var te *TextError
		assert.ErrorAs(t, err, &te, "ParseBinary(%q)", bad)
	}
}

func TestBoolAndList(t *testing.T) {
	v, err := ParseBool("Yes")
	require.NoError(t, err)
	assert.True(t, v)
	v, err = ParseBool("No")
	require.NoError(t, err)
	assert.False(t, v)
	_, err = ParseBool("yes")
	assert.Error(t, err)
	assert.Equal(t, "Yes", FormatBool(true))
	assert.Equal(t, "No", FormatBool(false))
	assert.Equal(t, []string{"CRC32C", "None"}, SplitList("CRC32C,None"))
	assert.Equal(t, []string{"None"}, SplitList("None"))
	assert.Nil(t, SplitList(""))
	assert.Equal(t, "Reject", ValueReject)
	assert.Equal(t, "NotUnderstood", NotUnderstood)
	assert.Equal(t, "Irrelevant", Irrelevant)
}
