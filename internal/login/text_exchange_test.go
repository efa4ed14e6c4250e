package login

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/pdu"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// textTarget answers Text Requests from a prepared text, in pieces of
// chunk bytes using the C bit (or F=0 with a TTT when fbit is set).
type textTarget struct {
	t       *testing.T
	text    []byte
	chunk   int
	useC    bool
	nopIn   bool // send a NOP-In ping before the first answer
	reqs    []*pdu.TextRequest
	nopOuts []*pdu.NOPOut
	queue   [][]byte
	statSN  uint32
	acc     []byte
	endless bool
}

func (tt *textTarget) SendPDU(_ context.Context, m pdu.Message) error {
	raw := m.Encode(nil)
	dec, err := pdu.Decode(raw)
	if err != nil {
		return err
	}
	switch r := dec.(type) {
	case *pdu.NOPOut:
		tt.nopOuts = append(tt.nopOuts, r)
		return nil
	case *pdu.TextRequest:
		tt.reqs = append(tt.reqs, r)
		if r.Continue {
			tt.acc = append(tt.acc, r.Data...)
			tt.push(&pdu.TextResponse{ITT: r.ITT, TTT: 0x77})
			return nil
		}
		tt.acc = append(tt.acc, r.Data...)
		if tt.nopIn && len(tt.reqs) == 1 {
			tt.push(&pdu.NOPIn{ITT: pdu.ReservedTag, TTT: 0x99, StatSN: tt.statSN})
			tt.push(&pdu.AsyncMessage{})
		}
		n := min(tt.chunk, len(tt.text))
		piece := tt.text[:n]
		if !tt.endless {
			tt.text = tt.text[n:]
		}
		more := len(tt.text) > 0
		resp := &pdu.TextResponse{ITT: r.ITT, TTT: pdu.ReservedTag, Final: !more, Data: piece}
		if more {
			resp.TTT = 0x1234
			resp.Continue = tt.useC
		}
		tt.push(resp)
		return nil
	}
	return errors.New("text target: unexpected PDU")
}

func (tt *textTarget) push(m interface {
	pdu.Message
}) {
	switch r := m.(type) {
	case *pdu.TextResponse:
		r.StatSN = tt.statSN
		r.ExpCmdSN = 10
		r.MaxCmdSN = 20
		tt.statSN++
	}
	tt.queue = append(tt.queue, m.Encode(nil))
}

func (tt *textTarget) RecvPDU(context.Context) ([]byte, error) {
	if len(tt.queue) == 0 {
		return nil, errors.New("text target: nothing to receive")
	}
	b := tt.queue[0]
	tt.queue = tt.queue[1:]
	return b, nil
}

var sendTargetsText = appendText(nil,
	kv{"TargetName", "iqn.2024-01.test:a"},
	kv{"TargetAddress", "10.0.0.1:3260,1"},
	kv{"TargetAddress", "[2001:db8::1]:3261,2"},
	kv{"TargetName", "iqn.2024-01.test:b"},
	kv{"TargetAlias", "ignored"},
	kv{"TargetName", "iqn.2024-01.test:c"},
	kv{"TargetAddress", "host.example"},
)

var wantTargets = []Target{
	{TargetName: "iqn.2024-01.test:a", Portals: []Portal{{"10.0.0.1", 3260, 1}, {"2001:db8::1", 3261, 2}}},
	{TargetName: "iqn.2024-01.test:b"},
	{TargetName: "iqn.2024-01.test:c", Portals: []Portal{{"host.example", 3260, 0}}},
}

func TestSendTargets(t *testing.T) {
	for _, c := range []struct {
		name  string
		chunk int
		useC  bool
		nop   bool
	}{{"one PDU", 1 << 20, false, false}, {"C bit", 7, true, false}, {"TTT continuation", 50, false, true}} {
		t.Run(c.name, func(t *testing.T) {
			tt := &textTarget{t: t, text: append([]byte(nil), sendTargetsText...), chunk: c.chunk, useC: c.useC, nopIn: c.nop, statSN: 40}
			x := &TextExchange{ITT: 3, CmdSN: 10, ExpStatSN: 40}
			got, err := x.SendTargets(context.Background(), tt, "All")
			require.NoError(t, err)
			assert.Equal(t, wantTargets, got)
			assert.Equal(t, "SendTargets=All\x00", string(tt.reqs[0].Data))
			assert.True(t, tt.reqs[0].Final)
			assert.Equal(t, pdu.ReservedTag, tt.reqs[0].TTT)
			for i, r := range tt.reqs {
				assert.Equal(t, uint32(10+i), r.CmdSN, "non-immediate: CmdSN advances")
				assert.Equal(t, uint32(3), r.ITT)
				if i > 0 {
					assert.Equal(t, uint32(0x1234), r.TTT)
					assert.Empty(t, r.Data)
				}
			}
			assert.Equal(t, uint32(10+len(tt.reqs)), x.CmdSN)
			assert.Equal(t, tt.statSN, x.ExpStatSN)
			assert.Equal(t, uint32(20), x.MaxCmdSN)
			if c.nop {
				require.Len(t, tt.nopOuts, 1)
				assert.Equal(t, uint32(0x99), tt.nopOuts[0].TTT)
				assert.Equal(t, pdu.ReservedTag, tt.nopOuts[0].ITT)
				assert.True(t, tt.nopOuts[0].Immediate)
			}
		})
	}
}

func TestTextExchangeBounds(t *testing.T) {
	tt := &textTarget{t: t, text: []byte(strings.Repeat("X-a=b\x00", 100)), chunk: 64, endless: true}
	x := &TextExchange{ITT: 1, MaxText: 4096}
	_, err := x.Text(context.Background(), tt, appendText(nil, kv{"SendTargets", "All"}))
	require.ErrorIs(t, err, iscsi.ErrTextTooLarge)

	tt = &textTarget{t: t, text: []byte("X=y\x00"), chunk: 0, endless: true} // empty, never final
	x = &TextExchange{ITT: 1}
	_, err = x.Text(context.Background(), tt, nil)
	require.ErrorIs(t, err, iscsi.ErrNoProgress)
}

func TestTextExchangeLongRequest(t *testing.T) {
	tt := &textTarget{t: t, text: []byte("A=B\x00"), chunk: 100}
	x := &TextExchange{ITT: 1, Immediate: true, MaxXmitDataSegmentLength: 512}
	long := appendText(nil, kv{"X-long", strings.Repeat("v", 1500)})
	out, err := x.Text(context.Background(), tt, long)
	require.NoError(t, err)
	assert.Equal(t, "A=B\x00", string(out))
	require.Len(t, tt.reqs, 3)
	assert.True(t, tt.reqs[0].Continue)
	assert.False(t, tt.reqs[0].Final)
	assert.Equal(t, uint32(0x77), tt.reqs[1].TTT)
	assert.True(t, tt.reqs[2].Final)
	assert.Equal(t, long, tt.acc)
	assert.Equal(t, uint32(0), x.CmdSN, "immediate: CmdSN unchanged")
}

func TestParseSendTargetsErrors(t *testing.T) {
	_, err := ParseSendTargets(appendText(nil, kv{"TargetAddress", "1.2.3.4"}))
	require.ErrorIs(t, err, iscsi.ErrLoginProtocol)
	_, err = ParseSendTargets(appendText(nil, kv{"TargetName", "iqn.x"}, kv{"TargetAddress", "[::1"}))
	require.ErrorIs(t, err, iscsi.ErrLoginProtocol)
	_, err = ParseSendTargets([]byte("garbage"))
	require.ErrorIs(t, err, iscsi.ErrLoginProtocol)
	got, err := ParseSendTargets(appendText(nil, kv{"TargetName", "iqn.x"}, kv{"TargetName", "iqn.y"}, kv{"TargetName", "iqn.x"}, kv{"TargetAddress", "h,3"}))
	require.NoError(t, err)
	assert.Equal(t, []Target{{TargetName: "iqn.x", Portals: []Portal{{"h", 3260, 3}}}, {TargetName: "iqn.y"}}, got)
}

func TestParseTargetAddress(t *testing.T) {
	cases := []struct {
		in     string
		host   string
		port   int
		tag    uint16
		hasTag bool
		bad    bool
	}{
		{"10.1.2.3", "10.1.2.3", 3260, 0, false, false},
		{"10.1.2.3:3261", "10.1.2.3", 3261, 0, false, false},
		{"10.1.2.3:3261,5", "10.1.2.3", 3261, 5, true, false},
		{"[fe80::1%eth0]:3260,1", "fe80::1%eth0", 3260, 1, true, false},
		{"[2001:db8::2]", "2001:db8::2", 3260, 0, false, false},
		{"2001:db8::2,4", "2001:db8::2", 3260, 4, true, false},
		{"name.example:860", "name.example", 860, 0, false, false},
		{"", "", 0, 0, false, true},
		{"[::1", "", 0, 0, false, true},
		{"[::1]x", "", 0, 0, false, true},
		{"h:0", "", 0, 0, false, true},
		{"h:99999", "", 0, 0, false, true},
		{"h,tag", "", 0, 0, false, true},
		{":3260", "", 0, 0, false, true},
	}
	for _, c := range cases {
		host, port, tag, hasTag, err := ParseTargetAddress(c.in)
		if c.bad {
			assert.ErrorIs(t, err, iscsi.ErrLoginProtocol, c.in)
			continue
		}
		require.NoError(t, err, c.in)
		assert.Equal(t, c.host, host, c.in)
		assert.Equal(t, c.port, port, c.in)
		assert.Equal(t, c.tag, tag, c.in)
		assert.Equal(t, c.hasTag, hasTag, c.in)
	}
}
