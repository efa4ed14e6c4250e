package iscsitest

import (
	"net"
	"testing"
	"time"

	"github.com/gosan/iscsi/pdu"
	"github.com/gosan/iscsi/scsi"
	"github.com/stretchr/testify/require"
)

const (
	testIQN       = "iqn.2024-01.test.iscsitest:disk"
	testInitiator = "iqn.2024-01.test.iscsitest:client"
)

// rawClient is a minimal initiator built on package pdu only.
type rawClient struct {
	t         testing.TB
	nc        net.Conn
	r         *pdu.Reader
	w         *pdu.Writer
	isid      [6]byte
	cmdSN     uint32
	expStatSN uint32
	itt       uint32
	tsih      uint16
}

func dialRaw(t testing.TB, addr string) *rawClient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	return newRawClient(t, nc)
}

func newRawClient(t testing.TB, nc net.Conn) *rawClient {
	t.Cleanup(func() { nc.Close() })
	return &rawClient{t: t, nc: nc, r: pdu.NewReader(nc, 0), w: pdu.NewWriter(nc), isid: [6]byte{0x80, 1, 2, 3, 4, 5}, cmdSN: 1}
}

func (c *rawClient) send(m pdu.Message) {
	c.t.Helper()
	require.NoError(c.t, c.w.WriteMessage(m))
}

// recv reads one PDU (5 s deadline).
func (c *rawClient) recv() (pdu.Message, error) {
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := c.r.ReadPDU(nil)
	if err != nil {
		return nil, err
	}
	m, err := pdu.Decode(b)
	if err != nil {
		return nil, err
	}
	switch v := m.(type) {
	case *pdu.SCSIResponse:
		c.expStatSN = v.StatSN + 1
	case *pdu.DataIn:
		if v.StatusPresent {
			c.expStatSN = v.StatSN + 1
		}
	case *pdu.NOPIn:
		if v.ITT != pdu.ReservedTag {
			c.expStatSN = v.StatSN + 1
		}
	case *pdu.TextResponse:
		c.expStatSN = v.StatSN + 1
	case *pdu.LoginResponse:
		c.expStatSN = v.StatSN + 1
	}
	return m, nil
}

func (c *rawClient) mustRecv() pdu.Message {
	c.t.Helper()
	m, err := c.recv()
	require.NoError(c.t, err)
	return m
}

func (c *rawClient) nextITT() uint32 { c.itt++; return c.itt }

// loginReq builds a Login Request.
func (c *rawClient) loginReq(csg, nsg pdu.Stage, transit bool, kvs ...pdu.KV) *pdu.LoginRequest {
	return &pdu.LoginRequest{
		Immediate: true, Transit: transit, CSG: csg, NSG: nsg, ISID: c.isid, TSIH: c.tsih,
		ITT: c.nextITT(), CmdSN: c.cmdSN, ExpStatSN: c.expStatSN, Data: pdu.AppendText(nil, kvs...),
	}
}

func (c *rawClient) loginStep(req *pdu.LoginRequest) *pdu.LoginResponse {
	c.t.Helper()
	c.send(req)
	m := c.mustRecv()
	resp, ok := m.(*pdu.LoginResponse)
	require.True(c.t, ok, "got %v", m.Opcode())
	return resp
}

// login logs in without authentication in one operational step.
func (c *rawClient) login(target string, kvs ...pdu.KV) (*pdu.LoginResponse, []pdu.KV) {
	c.t.Helper()
	base := []pdu.KV{{Key: "InitiatorName", Value: testInitiator}}
	if target == "" {
		base = append(base, pdu.KV{Key: "SessionType", Value: "Discovery"})
	} else {
		base = append(base, pdu.KV{Key: "TargetName", Value: target})
	}
	resp := c.loginStep(c.loginReq(pdu.LoginOperationalNegotiation, pdu.FullFeaturePhase, true, append(base, kvs...)...))
	kv, err := pdu.ParseText(resp.Data)
	require.NoError(c.t, err)
	if resp.Status() == pdu.LoginSuccess {
		c.tsih = resp.TSIH
	}
	return resp, kv
}

func (c *rawClient) mustLogin(target string, kvs ...pdu.KV) []pdu.KV {
	c.t.Helper()
	resp, kv := c.login(target, kvs...)
	require.Equal(c.t, pdu.LoginSuccess, resp.Status())
	require.True(c.t, resp.Transit)
	require.Equal(c.t, pdu.FullFeaturePhase, resp.NSG)
	return kv
}

// command sends a SCSI command (immediate data optional) and returns the ITT.
func (c *rawClient) command(lun uint64, cdb []byte, read bool, edtl uint32, final bool, data []byte) uint32 {
	c.t.Helper()
	itt := c.nextITT()
	c.send(&pdu.SCSICommand{
		Final: final, Read: read, Write: !read && edtl > 0, Attr: pdu.AttrSimple, LUN: scsi.EncodeLUN(lun), ITT: itt,
		ExpectedDataTransferLength: edtl, CmdSN: c.cmdSN, ExpStatSN: c.expStatSN, CDB: cdb, Data: data,
	})
	c.cmdSN++
	return itt
}

// readCommand runs a command with Data-In and returns the data, the
// Data-In PDUs and the status.
func (c *rawClient) readCommand(lun uint64, cdb []byte, edtl uint32) ([]byte, []*pdu.DataIn, *pdu.SCSIResponse) {
	c.t.Helper()
	c.command(lun, cdb, true, edtl, true, nil)
	buf := make([]byte, edtl)
	var dins []*pdu.DataIn
	for {
		switch m := c.mustRecv().(type) {
		case *pdu.DataIn:
			require.LessOrEqual(c.t, int(m.BufferOffset)+len(m.Data), len(buf))
			copy(buf[m.BufferOffset:], m.Data)
			dins = append(dins, m)
			if m.StatusPresent {
				return buf, dins, nil
			}
		case *pdu.SCSIResponse:
			return buf, dins, m
		default:
			c.t.Fatalf("unexpected %v", m.Opcode())
		}
	}
}

func (c *rawClient) status(lun uint64, cdb []byte) *pdu.SCSIResponse {
	c.t.Helper()
	c.command(lun, cdb, false, 0, true, nil)
	m := c.mustRecv()
	r, ok := m.(*pdu.SCSIResponse)
	require.True(c.t, ok, "got %v", m.Opcode())
	return r
}

func senseOf(t testing.TB, r *pdu.SCSIResponse) scsi.Sense {
	t.Helper()
	s, err := scsi.ParseSenseSegment(r.Data)
	require.NoError(t, err)
	return s
}

func kvMap(kvs []pdu.KV) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	return m
}

func oneTarget(luns ...LUN) Config {
	if len(luns) == 0 {
		luns = []LUN{{Number: 1, Blocks: 2048}}
	}
	return Config{Targets: []Target{{Name: testIQN, LUNs: luns}}}
}
