package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gosan/iscsi/initiator/iscsitest"
)

var allCommands = []string{
	"discover", "luns", "read", "write", "copy", "bench",
	"attach", "detach", "sessions", "supervise",
	"stage", "publish", "unpublish", "unstage",
}

// `iscsictl CMD --help` (and -h, and `iscsictl help CMD`) prints that
// command's usage and flags on stdout and exits 0: it used to print
// "flag: help requested" and no usage, with exit status 2.
func TestCommandHelp(t *testing.T) {
	for _, cmd := range allCommands {
		t.Run(cmd, func(t *testing.T) {
			for _, args := range [][]string{{cmd, "--help"}, {cmd, "-h"}, {"help", cmd}, {"--verbose", cmd, "-help"}} {
				code, out, errs := ctl(t, nil, nil, args...)
				assert.Equal(t, 0, code, "%v: stderr %q", args, errs)
				assert.Empty(t, errs, "%v", args)
				assert.True(t, strings.HasPrefix(out, "usage: iscsictl "+cmd+" "), "%v: %q", args, out)
				assert.NotContains(t, out, "help requested")
				assert.Contains(t, out, "\nflags:\n")
				assert.Contains(t, out, "-initiator-name", "global flags are listed too")
				// The entry is the command's own, not the whole usage.
				for _, other := range allCommands {
					if other != cmd && !strings.Contains(commandUsage(cmd), other) {
						assert.NotContains(t, out, "\n"+other+" ", "%v shows %s", args, other)
					}
				}
			}
		})
	}
	_, out, _ := ctl(t, nil, nil, "stage", "--help")
	assert.Contains(t, out, "-mount-options")
	assert.Contains(t, out, "-spec")
	_, out, _ = ctl(t, nil, nil, "read", "--help")
	assert.Contains(t, out, "-offset")
	assert.Contains(t, out, "LIBISCSI_CHAP_USERNAME", "URL commands explain the URL")
	code, out, _ := ctl(t, nil, nil, "help")
	assert.Equal(t, 0, code)
	assert.Equal(t, usage, out)
	code, _, errs := ctl(t, nil, nil, "read", "--bogus")
	assert.Equal(t, 2, code, "a bad flag is still a usage error")
	assert.Contains(t, errs, "bogus")
}

// A failed login names its target and portal once: the library's error
// says "iscsi: login to T at P: ..." and iscsictl no longer wraps it in
// "login to T at P: " again.
func TestLoginErrorNamesItsContextOnce(t *testing.T) {
	const iqn = "iqn.2026-11.org.gosan.test:ctl-once"
	srv := iscsitest.NewTestServer(t, iscsitest.Config{Targets: []iscsitest.Target{{
		Name: iqn, LUNs: []iscsitest.LUN{{Number: 1, Blocks: 64}},
		CHAP: &iscsitest.CHAPConfig{User: "ctl-user", Secret: "ctl-secret-0123"},
	}}})
	once := func(t *testing.T, errs string, parts ...string) {
		t.Helper()
		assert.Equal(t, 1, strings.Count(errs, "\n"), "one line: %q", errs)
		for _, p := range parts {
			assert.Equal(t, 1, strings.Count(errs, p), "%q in %q", p, errs)
		}
	}

	// Refused by the target (no credentials for a CHAP target).
	code, _, errs := ctl(t, nil, nil, "read", fmt.Sprintf("iscsi://%s/%s/1", srv.Addr(), iqn))
	assert.Equal(t, 1, code)
	once(t, errs, "login to", iqn, srv.Addr())
	assert.Contains(t, errs, "authentication failure")

	// A target that breaks the login protocol: the case the issue quoted
	// ("login to X at Y: iscsi: login to X at Y: login: protocol error").
	bad := brokenLoginTarget(t)
	code, _, errs = ctl(t, nil, nil, "read", fmt.Sprintf("iscsi://%s/%s/1", bad, iqn))
	assert.Equal(t, 1, code)
	once(t, errs, "login to", iqn, bad)
	assert.Contains(t, errs, "login protocol error")
	t.Logf("protocol error: %s", errs)

	// Discovery names its portal once too.
	code, _, errs = ctl(t, nil, nil, "discover", "iscsi://"+bad)
	assert.Equal(t, 1, code)
	once(t, errs, bad)
}

// brokenLoginTarget answers every Login Request with a Login Response
// whose next stage is the reserved value 2.
func brokenLoginTarget(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				var req [48]byte
				if _, err := io.ReadFull(c, req[:]); err != nil {
					return
				}
				dlen := int(req[5])<<16 | int(req[6])<<8 | int(req[7])
				if _, err := io.CopyN(io.Discard, c, int64((dlen+3)&^3)); err != nil {
					return
				}
				var resp [48]byte
				resp[0] = 0x23                                                             // Login Response
				resp[1] = 0x80 | 0x02                                                      // T=1, CSG=0, NSG=2 (reserved)
				copy(resp[8:14], req[8:14])                                                // ISID
				copy(resp[16:20], req[16:20])                                              // ITT
				binary.BigEndian.PutUint32(resp[28:], binary.BigEndian.Uint32(req[24:]))   // ExpCmdSN
				binary.BigEndian.PutUint32(resp[32:], binary.BigEndian.Uint32(req[24:])+1) // MaxCmdSN
				_, _ = c.Write(resp[:])
				_, _ = io.Copy(io.Discard, c)
			}(c)
		}
	}()
	return ln.Addr().String()
}
