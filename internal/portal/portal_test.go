package portal

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want Addr
		norm string
	}{
		{"10.0.0.1", Addr{Host: "10.0.0.1", Port: 3260}, "10.0.0.1:3260"},
		{"10.0.0.1:3261", Addr{Host: "10.0.0.1", Port: 3261}, "10.0.0.1:3261"},
		{"10.0.0.1:03261", Addr{Host: "10.0.0.1", Port: 3261}, "10.0.0.1:3261"},
		{"10.0.0.1:1", Addr{Host: "10.0.0.1", Port: 1}, "10.0.0.1:1"},
		{"10.0.0.1:65535", Addr{Host: "10.0.0.1", Port: 65535}, "10.0.0.1:65535"},
		{"[2001:db8::1]", Addr{Host: "2001:db8::1", Port: 3260}, "[2001:db8::1]:3260"},
		{"[2001:db8::1]:3262", Addr{Host: "2001:db8::1", Port: 3262}, "[2001:db8::1]:3262"},
		{"[fe80::1%eth0]:3262", Addr{Host: "fe80::1%eth0", Port: 3262}, "[fe80::1%eth0]:3262"},
		{"[::ffff:10.0.0.1]", Addr{Host: "::ffff:10.0.0.1", Port: 3260}, "[::ffff:10.0.0.1]:3260"},
		{"2001:db8::1", Addr{Host: "2001:db8::1", Port: 3260}, "[2001:db8::1]:3260"},
		{"fe80::1:3260", Addr{Host: "fe80::1:3260", Port: 3260}, "[fe80::1:3260]:3260"}, // bare: all of it is the address
		{"::1", Addr{Host: "::1", Port: 3260}, "[::1]:3260"},
		{"host.example", Addr{Host: "host.example", Port: 3260}, "host.example:3260"},
		{"Host-B.example.:860", Addr{Host: "Host-B.example.", Port: 860}, "Host-B.example.:860"},
		{"_srv.local", Addr{Host: "_srv.local", Port: 3260}, "_srv.local:3260"},
		{"10.0.0.1:3260,1", Addr{Host: "10.0.0.1", Port: 3260, Tag: 1, HasTag: true}, "10.0.0.1:3260"},
		{"h,0", Addr{Host: "h", Port: 3260, Tag: 0, HasTag: true}, "h:3260"},
		{"h:1,65535", Addr{Host: "h", Port: 1, Tag: 65535, HasTag: true}, "h:1"},
		{"[2001:db8::1]:99,2", Addr{Host: "2001:db8::1", Port: 99, Tag: 2, HasTag: true}, "[2001:db8::1]:99"},
		{"[::1],7", Addr{Host: "::1", Port: 3260, Tag: 7, HasTag: true}, "[::1]:3260"},
		{"2001:db8::2,4", Addr{Host: "2001:db8::2", Port: 3260, Tag: 4, HasTag: true}, "[2001:db8::2]:3260"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.norm, got.String())
			n, err := Normalize(tt.in)
			require.NoError(t, err)
			assert.Equal(t, tt.norm, n)
			again, err := Normalize(n)
			require.NoError(t, err)
			assert.Equal(t, n, again, "normal form is a fixed point")
		})
	}
}

func TestParseErrors(t *testing.T) {
	long := strings.Repeat("a", 300)
	tests := []struct {
		in, reason string
	}{
		{"", "empty"},
		{long, "too long"},
		{strings.Repeat("a", 254), "host is neither an IP address nor a host name"},
		{"h:0", "bad port (want 1..65535)"},
		{"h:65536", "bad port (want 1..65535)"},
		{"h:99999", "bad port (want 1..65535)"},
		{"h:abc", "bad port (want 1..65535)"},
		{"h:", "bad port (want 1..65535)"},
		{"h:+3260", "bad port (want 1..65535)"},
		{"h:-1", "bad port (want 1..65535)"},
		{"[::1]:0", "bad port (want 1..65535)"},
		{"[::1]:", "bad port (want 1..65535)"},
		{":3260", "empty host"},
		{"[]", "empty host"},
		{"[]:3260", "empty host"},
		{"[::1]x", "junk after ']'"},
		{"[::1]3260", "junk after ']'"},
		{"[::1]]", "junk after ']'"},
		{"[::1", "unterminated '['"},
		{"[::1:3260", "unterminated '['"},
		{"[10.0.0.1]", "brackets hold no IPv6 address"},
		{"[host]:3260", "brackets hold no IPv6 address"},
		{"[fe80::1%eth:0]", "brackets hold no IPv6 address"},
		{"[fe80::1%]", "brackets hold no IPv6 address"},
		{"fe80::1%e/0", "contains whitespace, a control character or '/'"},
		{"2001:db8::1:99999", "IPv6 address must be in brackets to carry a port"},
		{"a:b:c", "IPv6 address must be in brackets to carry a port"},
		{"h,tag", "bad portal group tag"},
		{"h,", "bad portal group tag"},
		{"h,65536", "bad portal group tag"},
		{"h:1,2,3", "bad port (want 1..65535)"},
		{"h,1,2", "host is neither an IP address nor a host name"},
		{"a/b", "contains whitespace, a control character or '/'"},
		{"a b", "contains whitespace, a control character or '/'"},
		{" 10.0.0.1", "contains whitespace, a control character or '/'"},
		{"10.0.0.1\n", "contains whitespace, a control character or '/'"},
		{"h\x00", "contains whitespace, a control character or '/'"},
		{"h\x7f", "contains whitespace, a control character or '/'"},
		{"h\tx", "contains whitespace, a control character or '/'"},
		{"-h", "host is neither an IP address nor a host name"},
		{".h", "host is neither an IP address nor a host name"},
		{"h%x", "host is neither an IP address nor a host name"},
		{"h]", "host is neither an IP address nor a host name"},
		{"hôte", "host is neither an IP address nor a host name"},
		{"h@x:1", "host is neither an IP address nor a host name"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			a, err := Parse(tt.in)
			var e *Error
			require.True(t, errors.As(err, &e), "want *Error, got %v", err)
			assert.Equal(t, tt.reason, e.Reason)
			assert.Equal(t, Addr{}, a)
			assert.LessOrEqual(t, len(e.Input), maxEchoLen+3)
			_, err = Normalize(tt.in)
			require.ErrorAs(t, err, &e)
		})
	}
}

func TestErrorBounded(t *testing.T) {
	_, err := Parse(strings.Repeat("\x01", 10000))
	require.Error(t, err)
	assert.Equal(t, `portal "`+strings.Repeat(`\x01`, 64)+`...": too long`, err.Error())
	_, err = Parse("h:" + strings.Repeat("9", 200))
	require.Error(t, err)
	assert.Equal(t, `portal "h:`+strings.Repeat("9", 62)+`...": bad port (want 1..65535)`, err.Error())
}

func TestMaxHostName(t *testing.T) {
	h := strings.Repeat("a", maxHostLen)
	a, err := Parse(h + ":65535,65535")
	require.NoError(t, err)
	assert.Equal(t, Addr{Host: h, Port: 65535, Tag: 65535, HasTag: true}, a)
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"10.0.0.1", "10.0.0.1:3261,1", "[2001:db8::1]:3262", "[fe80::1%eth0]", "2001:db8::2,4",
		"host.example:860", "[::1", "[::1]x", "h:0", "h:65536", "a b", "[]", "::ffff:1.2.3.4",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := Parse(s)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T, want *Error", err)
			}
			// 64 bytes quoted as \xNN at worst, "...", quotes, prefix, reason.
			if len(err.Error()) > 4*maxEchoLen+100 {
				t.Fatalf("error too long (%d bytes): %q", len(err.Error()), err.Error())
			}
			return
		}
		if a.Port < 1 || a.Port > 65535 || a.Host == "" {
			t.Fatalf("Parse(%q) = %+v", s, a)
		}
		str := a.String()
		b, err := Parse(str)
		if err != nil {
			t.Fatalf("String %q of %q does not re-parse: %v", str, s, err)
		}
		a.Tag, a.HasTag = 0, false
		if b != a {
			t.Fatalf("re-parse of %q: %+v, want %+v", str, b, a)
		}
		n, err := Normalize(s)
		if err != nil || n != str {
			t.Fatalf("Normalize(%q) = %q, %v; want %q", s, n, err, str)
		}
		if n2, err := Normalize(n); err != nil || n2 != n {
			t.Fatalf("Normalize not idempotent: %q -> %q (%v)", n, n2, err)
		}
	})
}
