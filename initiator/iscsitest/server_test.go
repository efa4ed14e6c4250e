package iscsitest

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/gosan/iscsi/pdu"
	"github.com/gosan/iscsi/scsi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoginPlain(t *testing.T) {
	srv := NewTestServer(t, Config{Targets: []Target{{Name: testIQN, Alias: "disk", LUNs: []LUN{{Number: 1, Blocks: 64}}}}})
	c := dialRaw(t, srv.Addr())
	kv := kvMap(c.mustLogin(testIQN,
		pdu.KV{Key: "HeaderDigest", Value: "CRC32C,None"},
		pdu.KV{Key: "InitialR2T", Value: "No"},
		pdu.KV{Key: "ImmediateData", Value: "Yes"},
		pdu.KV{Key: "MaxBurstLength", Value: "1048576"},
		pdu.KV{Key: "X-com.example.Foo", Value: "1"},
	))
	assert.Equal(t, "CRC32C", kv["HeaderDigest"])
	assert.Equal(t, "Yes", kv["InitialR2T"], "OR with the target's Yes")
	assert.Equal(t, "Yes", kv["ImmediateData"])
	assert.Equal(t, "262144", kv["MaxBurstLength"], "minimum")
	assert.Equal(t, "NotUnderstood", kv["X-com.example.Foo"])
	assert.Equal(t, "1", kv["TargetPortalGroupTag"])
	assert.Equal(t, "disk", kv["TargetAlias"])
	_, declared := kv["MaxRecvDataSegmentLength"]
	assert.False(t, declared, "like tgtd, MaxRecvDataSegmentLength is not declared by default")
	assert.NotZero(t, c.tsih)
}

func TestLoginDeclaresMRDSLAndWindow(t *testing.T) {
	cfg := oneTarget()
	cfg.Negotiation = Negotiation{MaxRecvDataSegmentLength: 65536, DeclareMaxRecvDataSegmentLength: true, CmdWindow: 8, PortalGroupTag: 7}
	srv := NewTestServer(t, cfg)
	c := dialRaw(t, srv.Addr())
	c.send(c.loginReq(pdu.LoginOperationalNegotiation, pdu.FullFeaturePhase, true,
		pdu.KV{Key: "InitiatorName", Value: testInitiator}, pdu.KV{Key: "TargetName", Value: testIQN}))
	resp := c.mustRecv().(*pdu.LoginResponse)
	require.Equal(t, pdu.LoginSuccess, resp.Status())
	kv, err := pdu.ParseText(resp.Data)
	require.NoError(t, err)
	m := kvMap(kv)
	assert.Equal(t, "65536", m["MaxRecvDataSegmentLength"])
	assert.Equal(t, "7", m["TargetPortalGroupTag"])
	assert.Equal(t, uint32(7), resp.MaxCmdSN-resp.ExpCmdSN)
	assert.Equal(t, c.cmdSN, resp.ExpCmdSN)
}

func TestLoginStatus(t *testing.T) {
	cfg := Config{Targets: []Target{
		{Name: testIQN, LUNs: []LUN{{Number: 1, Blocks: 8}}},
		{Name: testIQN + "-acl", LUNs: []LUN{{Number: 1, Blocks: 8}}, ACL: []string{"iqn.other"}},
		{Name: testIQN + "-chap", LUNs: []LUN{{Number: 1, Blocks: 8}}, CHAP: &CHAPConfig{User: "u", Secret: "secretsecret1"}},
	}}
	srv := NewTestServer(t, cfg)
	for _, tc := range []struct {
		name      string
		target    string
		immediate bool
		want      pdu.LoginStatus
	}{
		{"ok", testIQN, true, pdu.LoginSuccess},
		{"not found", "iqn.nope", true, pdu.LoginNotFound},
		{"acl", testIQN + "-acl", true, pdu.LoginAuthorizationFailure},
		{"chap skipped", testIQN + "-chap", true, pdu.LoginAuthenticationFailure},
		{"no immediate bit", testIQN, false, pdu.LoginInitiatorError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, srv.Addr())
			req := c.loginReq(pdu.LoginOperationalNegotiation, pdu.FullFeaturePhase, true,
				pdu.KV{Key: "InitiatorName", Value: testInitiator}, pdu.KV{Key: "TargetName", Value: tc.target})
			req.Immediate = tc.immediate
			resp := c.loginStep(req)
			assert.Equal(t, tc.want, resp.Status())
			if tc.want != pdu.LoginSuccess {
				_, err := c.recv()
				assert.Error(t, err, "the connection closes after a failed login")
			}
		})
	}
}

func TestLoginCHAP(t *testing.T) {
	for _, tc := range []struct {
		name   string
		alg    int
		mutual bool
		secret string
		want   pdu.LoginStatus
	}{
		{"md5", CHAPMD5, false, "secretsecret1", pdu.LoginSuccess},
		{"sha256 mutual", CHAPSHA256, true, "secretsecret1", pdu.LoginSuccess},
		{"sha1", CHAPSHA1, false, "secretsecret1", pdu.LoginSuccess},
		{"wrong secret", CHAPMD5, false, "wrongwrongwrong", pdu.LoginAuthenticationFailure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chap := &CHAPConfig{User: "user", Secret: "secretsecret1", TargetUser: "tgt", TargetSecret: "targetsecret2", Algorithms: []int{tc.alg}}
			srv := NewTestServer(t, Config{Targets: []Target{{Name: testIQN, LUNs: []LUN{{Number: 1, Blocks: 8}}, CHAP: chap}}})
			c := dialRaw(t, srv.Addr())
			r := c.loginStep(c.loginReq(pdu.SecurityNegotiation, pdu.LoginOperationalNegotiation, false,
				pdu.KV{Key: "InitiatorName", Value: testInitiator}, pdu.KV{Key: "TargetName", Value: testIQN},
				pdu.KV{Key: "AuthMethod", Value: "CHAP,None"}))
			require.Equal(t, pdu.LoginSuccess, r.Status())
			kv, _ := pdu.ParseText(r.Data)
			require.Equal(t, "CHAP", kvMap(kv)["AuthMethod"])
			r = c.loginStep(c.loginReq(pdu.SecurityNegotiation, pdu.LoginOperationalNegotiation, false,
				pdu.KV{Key: "CHAP_A", Value: "7,6,5"}))
			kv, _ = pdu.ParseText(r.Data)
			m := kvMap(kv)
			require.Equal(t, strconv.Itoa(tc.alg), m["CHAP_A"])
			id, err := strconv.Atoi(m["CHAP_I"])
			require.NoError(t, err)
			chal, err := pdu.ParseBinary(m["CHAP_C"])
			require.NoError(t, err)
			keys := []pdu.KV{{Key: "CHAP_N", Value: "user"}, {Key: "CHAP_R", Value: pdu.FormatHex(CHAPResponse(tc.alg, byte(id), tc.secret, chal))}}
			myChal := []byte("0123456789abcdef")
			if tc.mutual {
				keys = append(keys, pdu.KV{Key: "CHAP_I", Value: "9"}, pdu.KV{Key: "CHAP_C", Value: pdu.FormatHex(myChal)})
			}
			r = c.loginStep(c.loginReq(pdu.SecurityNegotiation, pdu.LoginOperationalNegotiation, true, keys...))
			require.Equal(t, tc.want, r.Status())
			if tc.want != pdu.LoginSuccess {
				return
			}
			require.True(t, r.Transit)
			kv, _ = pdu.ParseText(r.Data)
			m = kvMap(kv)
			if tc.mutual {
				assert.Equal(t, "tgt", m["CHAP_N"])
				assert.Equal(t, pdu.FormatHex(CHAPResponse(tc.alg, 9, "targetsecret2", myChal)), m["CHAP_R"])
			}
			r = c.loginStep(c.loginReq(pdu.LoginOperationalNegotiation, pdu.FullFeaturePhase, true))
			require.Equal(t, pdu.LoginSuccess, r.Status())
			assert.NotZero(t, r.TSIH)
		})
	}
}

func TestDiscovery(t *testing.T) {
	srv := NewTestServer(t, Config{Targets: []Target{
		{Name: testIQN + "a", LUNs: []LUN{{Number: 1, Blocks: 8}}},
		{Name: testIQN + "b", LUNs: []LUN{{Number: 1, Blocks: 8}}, ACL: []string{"iqn.someone-else"}},
		{Name: testIQN + "c", LUNs: []LUN{{Number: 1, Blocks: 8}}, ACL: []string{testInitiator}},
	}})
	c := dialRaw(t, srv.Addr())
	c.mustLogin("")
	c.send(&pdu.TextRequest{Immediate: true, Final: true, ITT: c.nextITT(), TTT: pdu.ReservedTag, CmdSN: c.cmdSN, ExpStatSN: c.expStatSN,
		Data: pdu.AppendText(nil, pdu.KV{Key: "SendTargets", Value: "All"})})
	resp := c.mustRecv().(*pdu.TextResponse)
	assert.True(t, resp.Final)
	kv, err := pdu.ParseText(resp.Data)
	require.NoError(t, err)
	addr := srv.Addr() + ",1"
	assert.Equal(t, []pdu.KV{
		{Key: "TargetName", Value: testIQN + "a"}, {Key: "TargetAddress", Value: addr},
		{Key: "TargetName", Value: testIQN + "c"}, {Key: "TargetAddress", Value: addr},
	}, kv)
	c.send(&pdu.LogoutRequest{Immediate: true, ITT: c.nextITT(), CmdSN: c.cmdSN, ExpStatSN: c.expStatSN})
	lr := c.mustRecv().(*pdu.LogoutResponse)
	assert.Equal(t, pdu.LogoutSuccess, lr.Response)
}

func TestWriteImmediateR2TAndReadBack(t *testing.T) {
	cfg := oneTarget(LUN{Number: 1, Blocks: 1024, BlockSize: 512})
	cfg.Negotiation = Negotiation{MaxBurstLength: 16384, FirstBurstLength: 8192, MaxOutstandingR2T: 2}
	cfg.NoUnitAttention = true
	srv := NewTestServer(t, cfg)
	c := dialRaw(t, srv.Addr())
	c.mustLogin(testIQN,
		pdu.KV{Key: "MaxRecvDataSegmentLength", Value: "4096"},
		pdu.KV{Key: "MaxOutstandingR2T", Value: "4"},
		pdu.KV{Key: "MaxBurstLength", Value: "262144"},
		pdu.KV{Key: "FirstBurstLength", Value: "65536"})

	const size = 64 << 10
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	itt := c.command(1, scsi.Write10CDB(nil, 8, size/512, 0), false, size, true, payload[:4096])
	got := 4096
	var r2ts []*pdu.R2T
	var resp *pdu.SCSIResponse
	for resp == nil {
		switch m := c.mustRecv().(type) {
		case *pdu.R2T:
			require.Equal(t, itt, m.ITT)
			r2ts = append(r2ts, m)
			assert.LessOrEqual(t, m.DesiredDataTransferLength, uint32(16384))
			// Answer with Data-Out of 4 KiB each.
			var sn uint32
			for off := m.BufferOffset; off < m.BufferOffset+m.DesiredDataTransferLength; off += 4096 {
				end := min(off+4096, m.BufferOffset+m.DesiredDataTransferLength)
				c.send(&pdu.DataOut{Final: end == m.BufferOffset+m.DesiredDataTransferLength, LUN: scsi.EncodeLUN(1), ITT: itt, TTT: m.TTT,
					ExpStatSN: c.expStatSN, DataSN: sn, BufferOffset: off, Data: payload[off:end]})
				sn++
				got += int(end - off)
			}
		case *pdu.SCSIResponse:
			resp = m
		default:
			t.Fatalf("unexpected %v", m.Opcode())
		}
	}
	assert.Equal(t, uint8(0), resp.Status)
	assert.Equal(t, size, got)
	require.Len(t, r2ts, 4, "60 KiB in 16 KiB bursts")
	assert.Equal(t, uint32(4096), r2ts[0].BufferOffset)
	for i, r := range r2ts {
		assert.Equal(t, uint32(i), r.R2TSN)
	}
	data, err := srv.LUNData(testIQN, 1)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(payload, data[8*512:8*512+size]))

	buf, dins, sresp := c.readCommand(1, scsi.Read10CDB(nil, 8, size/512, 0), size)
	require.Nil(t, sresp)
	assert.Equal(t, payload, buf)
	require.Len(t, dins, size/4096, "Data-In split at the initiator's MaxRecvDataSegmentLength")
	for i, d := range dins {
		assert.Equal(t, uint32(i), d.DataSN)
		assert.Equal(t, uint32(i*4096), d.BufferOffset)
		assert.Equal(t, i == len(dins)-1, d.StatusPresent, "S only on the last")
		assert.Equal(t, i == len(dins)-1, d.Final)
	}
	assert.Empty(t, srv.Violations())

	// The record shows the write's immediate data and the Data-Out sequence.
	recs := srv.Records()
	require.Len(t, recs, 1)
	cmds := recs[0].Filter(Received, pdu.OpSCSICommand)
	require.Len(t, cmds, 2)
	assert.Equal(t, 4096, cmds[0].DataLength)
	assert.Equal(t, cmds[0].CmdSN+1, cmds[1].CmdSN)
	assert.Equal(t, byte(0x2a), cmds[0].CDB[0])
	outs := recs[0].Filter(Received, pdu.OpDataOut)
	require.Len(t, outs, 15)
	assert.Equal(t, uint32(4096), outs[0].BufferOffset)
	assert.Equal(t, uint32(0), outs[0].DataSN)
	assert.Equal(t, uint32(1), outs[1].DataSN)
	assert.Len(t, recs[0].Filter(Sent, pdu.OpDataIn), 16)
	assert.Equal(t, testInitiator, recs[0].Initiator)
}

func TestUnsolicitedData(t *testing.T) {
	cfg := oneTarget()
	cfg.Negotiation = Negotiation{InitialR2T: Bool(false), FirstBurstLength: 8192}
	cfg.NoUnitAttention = true
	srv := NewTestServer(t, cfg)
	c := dialRaw(t, srv.Addr())
	kv := kvMap(c.mustLogin(testIQN, pdu.KV{Key: "InitialR2T", Value: "No"}, pdu.KV{Key: "FirstBurstLength", Value: "65536"}))
	require.Equal(t, "No", kv["InitialR2T"])
	require.Equal(t, "8192", kv["FirstBurstLength"])
	payload := bytes.Repeat([]byte{0xab}, 16384)
	itt := c.command(1, scsi.Write10CDB(nil, 0, 32, 0), false, 16384, false, payload[:2048])
	// Unsolicited Data-Out up to FirstBurstLength; the second one has a bad DataSN.
	c.send(&pdu.DataOut{LUN: scsi.EncodeLUN(1), ITT: itt, TTT: pdu.ReservedTag, DataSN: 0, BufferOffset: 2048, Data: payload[2048:4096]})
	c.send(&pdu.DataOut{Final: true, LUN: scsi.EncodeLUN(1), ITT: itt, TTT: pdu.ReservedTag, DataSN: 5, BufferOffset: 4096, Data: payload[4096:8192]})
	r2t := c.mustRecv().(*pdu.R2T)
	assert.Equal(t, uint32(8192), r2t.BufferOffset)
	assert.Equal(t, uint32(8192), r2t.DesiredDataTransferLength)
	c.send(&pdu.DataOut{Final: true, LUN: scsi.EncodeLUN(1), ITT: itt, TTT: r2t.TTT, BufferOffset: 8192, Data: payload[8192:]})
	resp := c.mustRecv().(*pdu.SCSIResponse)
	assert.Equal(t, uint8(0), resp.Status)
	data, _ := srv.LUNData(testIQN, 1)
	assert.Equal(t, payload, data[:16384])
	v := srv.Violations()
	require.Len(t, v, 1)
	assert.Contains(t, v[0].What, "DataSN 5, expected 1")
}

func TestUnitAttentionAndErrors(t *testing.T) {
	srv := NewTestServer(t, oneTarget(LUN{Number: 1, Blocks: 100, BlockSize: 4096, MaxTransferBlocks: 16}))
	c := dialRaw(t, srv.Addr())
	c.mustLogin(testIQN)
	// INQUIRY does not consume the unit attention.
	buf, _, resp := c.readCommand(1, scsi.InquiryCDB(nil, 96), 96)
	require.Nil(t, resp)
	inq, err := scsi.ParseInquiry(buf)
	require.NoError(t, err)
	assert.Equal(t, "GOSAN", inq.Vendor)

	r := c.status(1, scsi.TestUnitReadyCDB(nil))
	require.Equal(t, uint8(scsi.StatusCheckCondition), r.Status)
	s := senseOf(t, r)
	assert.Equal(t, scsi.SenseUnitAttention, s.Key)
	assert.Equal(t, [2]uint8{0x29, 0}, [2]uint8{s.ASC, s.ASCQ})
	assert.Equal(t, uint8(0), c.status(1, scsi.TestUnitReadyCDB(nil)).Status, "only the first command")

	for _, tc := range []struct {
		name string
		cdb  []byte
		key  scsi.SenseKey
		asc  uint8
		lun  uint64
		read bool
		edtl uint32
	}{
		{"unknown opcode", []byte{0xc7, 0, 0, 0, 0, 0}, scsi.SenseIllegalRequest, 0x20, 1, false, 0},
		{"LBA out of range", scsi.Read16CDB(nil, 99, 2, 0), scsi.SenseIllegalRequest, 0x21, 1, true, 8192},
		{"beyond max transfer", scsi.Read16CDB(nil, 0, 17, 0), scsi.SenseIllegalRequest, 0x24, 1, true, 17 * 4096},
		{"no such LUN", scsi.TestUnitReadyCDB(nil), scsi.SenseIllegalRequest, 0x25, 3, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, dins, r := c.readCommand(tc.lun, tc.cdb, tc.edtl)
			require.Empty(t, dins)
			require.NotNil(t, r)
			require.Equal(t, uint8(scsi.StatusCheckCondition), r.Status)
			s := senseOf(t, r)
			assert.Equal(t, tc.key, s.Key)
			assert.Equal(t, tc.asc, s.ASC)
		})
	}

	// READ CAPACITY(16), VPD pages and REPORT LUNS.
	buf, _, _ = c.readCommand(1, scsi.ReadCapacity16CDB(nil, 32), 32)
	capa, err := scsi.ParseReadCapacity16(buf)
	require.NoError(t, err)
	assert.Equal(t, uint64(99), capa.LastLBA)
	assert.Equal(t, uint32(4096), capa.BlockLength)
	buf, dins, _ := c.readCommand(1, scsi.InquiryVPDCDB(nil, 0xb0, 255), 255)
	bl, err := scsi.ParseVPDBlockLimits(buf[:dins[0].ResidualCount*0+uint32(len(dins[0].Data))])
	require.NoError(t, err)
	assert.Equal(t, uint32(16), bl.MaxTransferLength)
	assert.True(t, dins[0].ResidualUnderflow)
	buf, _, _ = c.readCommand(1, scsi.ReportLUNsCDB(nil, 0, 64), 64)
	luns, err := scsi.ParseReportLUNs(buf)
	require.NoError(t, err)
	assert.Equal(t, []uint64{1}, luns)
}

func TestCheckConditionAndRejectHooks(t *testing.T) {
	cfg := oneTarget()
	cfg.NoUnitAttention = true
	srv := NewTestServer(t, cfg)
	c := dialRaw(t, srv.Addr())
	c.mustLogin(testIQN)
	srv.Faults().CheckCondition(1, MatchOpcode(0x00), Sense{Key: scsi.SenseNotReady, ASC: 0x04, ASCQ: 0x01})
	r := c.status(1, scsi.TestUnitReadyCDB(nil))
	require.Equal(t, uint8(scsi.StatusCheckCondition), r.Status)
	assert.Equal(t, scsi.SenseNotReady, senseOf(t, r).Key)
	assert.Equal(t, uint8(0), c.status(1, scsi.TestUnitReadyCDB(nil)).Status)

	srv.Faults().RejectCommands(1, nil, pdu.RejectCommandNotSupported)
	c.command(1, scsi.TestUnitReadyCDB(nil), false, 0, true, nil)
	rej := c.mustRecv().(*pdu.Reject)
	assert.Equal(t, pdu.RejectCommandNotSupported, rej.Reason)
	assert.Equal(t, pdu.OpSCSICommand, rej.RejectedHeader().Opcode())
}

func TestDigestCorruption(t *testing.T) {
	srv := NewTestServer(t, oneTarget())
	c := dialRaw(t, srv.Addr())
	c.mustLogin(testIQN, pdu.KV{Key: "HeaderDigest", Value: "CRC32C"}, pdu.KV{Key: "DataDigest", Value: "CRC32C"})
	c.r.SetDigests(true, true)
	c.w.SetDigests(true, true)
	ping := func() error {
		c.send(&pdu.NOPOut{Immediate: true, ITT: c.nextITT(), TTT: pdu.ReservedTag, CmdSN: c.cmdSN, ExpStatSN: c.expStatSN, Data: []byte("ping")})
		_, err := c.recv()
		return err
	}
	require.NoError(t, ping())
	srv.Faults().CorruptNextDataDigest(1)
	var de *pdu.DigestError
	require.ErrorAs(t, ping(), &de)
	assert.False(t, de.Header)
	srv.Faults().CorruptNextHeaderDigest(1)
	require.ErrorAs(t, ping(), &de)
	assert.True(t, de.Header)
}

func TestDropAfterPDUs(t *testing.T) {
	srv := NewTestServer(t, oneTarget())
	c := dialRaw(t, srv.Addr())
	c.mustLogin(testIQN)
	srv.Faults().DropAfterPDUs(2)
	nop := func() {
		c.send(&pdu.NOPOut{Immediate: true, ITT: c.nextITT(), TTT: pdu.ReservedTag, CmdSN: c.cmdSN, ExpStatSN: c.expStatSN})
	}
	nop()
	_, ok := c.mustRecv().(*pdu.NOPIn)
	require.True(t, ok)
	nop()
	_, err := c.recv()
	require.Error(t, err)
	assert.True(t, errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isReset(err), "%v", err)
	require.Eventually(t, func() bool { return srv.Records()[0].Closed }, 2*time.Second, 5*time.Millisecond)
}

func isReset(err error) bool {
	return err != nil && bytes.Contains([]byte(err.Error()), []byte("reset"))
}

func TestCommandWindow(t *testing.T) {
	cfg := oneTarget()
	cfg.NoUnitAttention = true
	cfg.Negotiation.CmdWindow = 2
	srv := NewTestServer(t, cfg)
	c := dialRaw(t, srv.Addr())
	c.mustLogin(testIQN)
	srv.SetCmdWindow(0)
	nop := c.mustRecv().(*pdu.NOPIn)
	assert.Equal(t, pdu.ReservedTag, nop.TTT)
	assert.Equal(t, nop.ExpCmdSN-1, nop.MaxCmdSN, "window closed")
	// A command now is outside the window: ignored and recorded.
	c.command(1, scsi.TestUnitReadyCDB(nil), false, 0, true, nil)
	c.cmdSN--
	// Reopen only once the server has seen it, or the reopening may win.
	require.Eventually(t, func() bool { return len(srv.Violations()) == 1 }, 2*time.Second, time.Millisecond)
	srv.SetCmdWindow(4)
	nop = c.mustRecv().(*pdu.NOPIn)
	assert.Equal(t, nop.ExpCmdSN+3, nop.MaxCmdSN)
	assert.Equal(t, uint8(0), c.status(1, scsi.TestUnitReadyCDB(nil)).Status)
	v := srv.Violations()
	require.Len(t, v, 1)
	assert.Contains(t, v[0].What, "outside window")
}

func TestPingsAndAsync(t *testing.T) {
	srv := NewTestServer(t, oneTarget())
	c := dialRaw(t, srv.Addr())
	c.mustLogin(testIQN)
	srv.Faults().PingEvery(10 * time.Millisecond)
	nop := c.mustRecv().(*pdu.NOPIn)
	srv.Faults().PingEvery(0)
	require.NotEqual(t, pdu.ReservedTag, nop.TTT)
	assert.Equal(t, pdu.ReservedTag, nop.ITT)
	c.send(&pdu.NOPOut{Immediate: true, ITT: pdu.ReservedTag, TTT: nop.TTT, CmdSN: c.cmdSN, ExpStatSN: c.expStatSN})
	require.Eventually(t, func() bool {
		p := srv.Records()[0].Pings
		return len(p) > 0 && p[0].TTT == nop.TTT && !p[0].Answered.IsZero()
	}, 2*time.Second, 5*time.Millisecond)

	// Drain pings that were already under way, then ask for a logout.
	require.Equal(t, 1, srv.SendAsync(pdu.AsyncLogoutRequest, 0, 0, 5))
	for {
		m := c.mustRecv()
		if a, ok := m.(*pdu.AsyncMessage); ok {
			assert.Equal(t, pdu.AsyncLogoutRequest, a.Event)
			assert.Equal(t, uint16(5), a.Parameter3)
			break
		}
	}
}

func TestMutateOutgoing(t *testing.T) {
	srv := NewTestServer(t, oneTarget())
	c := dialRaw(t, srv.Addr())
	c.mustLogin(testIQN)
	srv.Faults().MutateOutgoing(func(hdr, data []byte) []byte {
		h := (*pdu.BHS)(hdr[:pdu.BHSLen])
		h.SetITT(h.ITT() + 100)
		return data
	})
	itt := c.nextITT()
	c.send(&pdu.NOPOut{Immediate: true, ITT: itt, TTT: pdu.ReservedTag, CmdSN: c.cmdSN, ExpStatSN: c.expStatSN})
	nop := c.mustRecv().(*pdu.NOPIn)
	assert.Equal(t, itt+100, nop.ITT)
}

func TestSessionReinstatement(t *testing.T) {
	srv := NewTestServer(t, oneTarget())
	c1 := dialRaw(t, srv.Addr())
	c1.mustLogin(testIQN)
	c2 := dialRaw(t, srv.Addr())
	c2.mustLogin(testIQN)
	_, err := c1.recv()
	require.Error(t, err, "the old connection is dropped")
	assert.NotEqual(t, c1.tsih, c2.tsih)
}

func TestTaskManagement(t *testing.T) {
	cfg := oneTarget()
	cfg.NoUnitAttention = true
	srv := NewTestServer(t, cfg)
	c := dialRaw(t, srv.Addr())
	c.mustLogin(testIQN)
	itt := c.command(1, scsi.Write10CDB(nil, 0, 16, 0), false, 8192, true, nil)
	r2t := c.mustRecv().(*pdu.R2T)
	assert.Equal(t, itt, r2t.ITT)
	tmf := func(fn pdu.TMFunction, ref uint32) pdu.TMFResponse {
		c.send(&pdu.TaskMgmtRequest{Immediate: true, Function: fn | 0x80, LUN: scsi.EncodeLUN(1), ITT: c.nextITT(), ReferencedTaskTag: ref, CmdSN: c.cmdSN, ExpStatSN: c.expStatSN})
		return c.mustRecv().(*pdu.TaskMgmtResponse).Response
	}
	assert.Equal(t, pdu.TMFFunctionComplete, tmf(pdu.TMFAbortTask, itt))
	assert.Equal(t, pdu.TMFTaskDoesNotExist, tmf(pdu.TMFAbortTask, itt))
	assert.Equal(t, pdu.TMFFunctionComplete, tmf(pdu.TMFLogicalUnitReset, pdu.ReservedTag))
	assert.Equal(t, pdu.TMFFunctionComplete, tmf(pdu.TMFTargetWarmReset, pdu.ReservedTag))
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	srv, err := NewServer(oneTarget())
	require.NoError(t, err)
	for i := 0; i < 3; i++ {
		c := dialRaw(t, srv.Addr())
		c.mustLogin(testIQN)
	}
	srv.Faults().StallUntilReleased()
	require.NoError(t, srv.Close())
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !assert.LessOrEqual(t, runtime.NumGoroutine(), before) {
		buf := make([]byte, 1<<20)
		t.Logf("%s", buf[:runtime.Stack(buf, true)])
	}
}

func TestUnmapAndWriteSame(t *testing.T) {
	cfg := oneTarget(LUN{Number: 0, Blocks: 64})
	cfg.NoUnitAttention = true
	srv := NewTestServer(t, cfg)
	require.NoError(t, srv.WriteLUN(testIQN, 0, 0, bytes.Repeat([]byte{0xff}, 64*512)))
	c := dialRaw(t, srv.Addr())
	c.mustLogin(testIQN)
	params := scsi.AppendUnmapParams(nil, []scsi.UnmapDescriptor{{LBA: 2, Blocks: 3}})
	c.command(0, scsi.UnmapCDB(nil, false, uint16(len(params))), false, uint32(len(params)), true, params)
	require.Equal(t, uint8(0), c.mustRecv().(*pdu.SCSIResponse).Status)
	c.command(0, scsi.WriteSame16CDB(nil, 10, 4, scsi.WriteSameUnmap), false, 512, true, make([]byte, 512))
	require.Equal(t, uint8(0), c.mustRecv().(*pdu.SCSIResponse).Status)
	d, _ := srv.LUNData(testIQN, 0)
	for i := 0; i < 64; i++ {
		want := byte(0xff)
		if (i >= 2 && i < 5) || (i >= 10 && i < 14) {
			want = 0
		}
		assert.Equal(t, want, d[i*512], "block %d", i)
	}
}
