package login

import (
	"context"
	"fmt"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/pdu"
)

// DefaultMaxTextResponse bounds the text a TextExchange accepts (1 MiB).
const DefaultMaxTextResponse = 1 << 20

// maxTextPDUs bounds the Text Requests of one exchange.
const maxTextPDUs = 4096

// TextExchange runs Text Request/Response exchanges (RFC 7143 §11.10,
// §11.11) in the full feature phase, e.g. SendTargets on a discovery
// session. It carries the sequence numbers and updates them as PDUs go
// and come.
type TextExchange struct {
	ITT uint32 // Initiator Task Tag for the exchange
	// CmdSN of the next request; advanced after every non-immediate
	// request (each Text Request PDU is a command).
	CmdSN     uint32
	ExpStatSN uint32 // updated to StatSN+1 of every response
	ExpCmdSN  uint32 // from the last response
	MaxCmdSN  uint32 // from the last response
	// Immediate sends the requests with the I bit (CmdSN not advanced).
	Immediate bool
	// MaxText bounds the accumulated response text; 0 is
	// DefaultMaxTextResponse.
	MaxText int
	// MaxXmitDataSegmentLength bounds our data segments (the target's
	// MaxRecvDataSegmentLength); 0 is 8192.
	MaxXmitDataSegmentLength int
}

// Text sends text (NUL-terminated key=value pairs, split with the C bit if
// longer than MaxXmitDataSegmentLength) and returns the target's whole
// answer, following C bits and Target Transfer Tags. NOP-In pings that
// arrive meanwhile are answered; Async Messages are skipped.
func (x *TextExchange) Text(ctx context.Context, t Transport, text []byte) ([]byte, error) {
	maxText := x.MaxText
	if maxText <= 0 {
		maxText = DefaultMaxTextResponse
	}
	seg := x.MaxXmitDataSegmentLength
	if seg <= 0 {
		seg = DefaultMaxRecvDataSegmentLength
	}
	pdus := 0
	ttt := pdu.ReservedTag
	// A request that answers a Target Transfer Tag copies the LUN of the
	// response that carried it (RFC 7143 §11.10.4, UNH-IOL 18.2).
	var lun uint64
	chunks := splitText(text, seg)
	var resp *pdu.TextResponse
	for i, c := range chunks {
		last := i == len(chunks)-1
		var err error
		resp, err = x.roundTrip(ctx, t, &pdus, last, !last, ttt, lun, c)
		if err != nil {
			return nil, err
		}
		if !last {
			if resp.Final || len(resp.Data) != 0 || resp.TTT == pdu.ReservedTag {
				return nil, protoErr("target answered a continued Text Request with F, text or no TTT")
			}
			ttt, lun = resp.TTT, resp.LUN
		}
	}
	var acc []byte
	for {
		if len(acc)+len(resp.Data) > maxText {
			return nil, fmt.Errorf("%w: more than %d bytes of text", iscsi.ErrTextTooLarge, maxText)
		}
		acc = append(acc, resp.Data...)
		if resp.Final {
			return acc, nil
		}
		if resp.TTT == pdu.ReservedTag {
			return nil, protoErr("non-final Text Response without a Target Transfer Tag")
		}
		var err error
		resp, err = x.roundTrip(ctx, t, &pdus, true, false, resp.TTT, resp.LUN, nil)
		if err != nil {
			return nil, err
		}
	}
}

func (x *TextExchange) roundTrip(ctx context.Context, t Transport, pdus *int, final, cont bool, ttt uint32, lun uint64, data []byte) (*pdu.TextResponse, error) {
	*pdus++
	if *pdus > maxTextPDUs {
		return nil, fmt.Errorf("%w: more than %d Text Requests", iscsi.ErrNoProgress, maxTextPDUs)
	}
	req := &pdu.TextRequest{
		Immediate: x.Immediate,
		Final:     final,
		Continue:  cont,
		LUN:       lun,
		ITT:       x.ITT,
		TTT:       ttt,
		CmdSN:     x.CmdSN,
		ExpStatSN: x.ExpStatSN,
		Data:      data,
	}
	if err := t.SendPDU(ctx, req); err != nil {
		return nil, fmt.Errorf("login: text: send: %w", err)
	}
	if !x.Immediate {
		x.CmdSN++
	}
	for others := 0; ; others++ {
		if others > maxTextPDUs {
			return nil, fmt.Errorf("%w: too many unrelated PDUs during a text exchange", iscsi.ErrNoProgress)
		}
		raw, err := t.RecvPDU(ctx)
		if err != nil {
			return nil, fmt.Errorf("login: text: receive: %w", err)
		}
		m, err := pdu.Decode(raw)
		if err != nil {
			return nil, protoErr("undecodable PDU: %v", err)
		}
		switch m := m.(type) {
		case *pdu.TextResponse:
			if m.ITT != x.ITT {
				return nil, protoErr("Text Response ITT 0x%x, want 0x%x", m.ITT, x.ITT)
			}
			if m.Final && m.Continue {
				return nil, protoErr("Text Response with both F and C")
			}
			x.ExpStatSN, x.ExpCmdSN, x.MaxCmdSN = m.StatSN+1, m.ExpCmdSN, m.MaxCmdSN
			return m, nil
		case *pdu.NOPIn:
			if m.TTT == pdu.ReservedTag {
				continue // unsolicited status-less NOP-In: nothing to answer
			}
			out := &pdu.NOPOut{Immediate: true, LUN: m.LUN, ITT: pdu.ReservedTag, TTT: m.TTT, CmdSN: x.CmdSN, ExpStatSN: x.ExpStatSN}
			if err := t.SendPDU(ctx, out); err != nil {
				return nil, fmt.Errorf("login: text: answering NOP-In: %w", err)
			}
		case *pdu.AsyncMessage:
			continue
		case *pdu.Reject:
			return nil, protoErr("target rejected the Text Request (%v)", m.Reason)
		default:
			return nil, protoErr("%v during a text exchange", m.Opcode())
		}
	}
}

// Target is one SendTargets entry.
type Target struct {
	TargetName string
	// Portals lists the target's TargetAddress values. Empty means the
	// target is reached through the portal the discovery ran on (RFC 7143 Appendix C).
	Portals []Portal
}

// Portal is one TargetAddress.
type Portal struct {
	Address string // host name or IP, IPv6 without brackets
	Port    int    // 3260 when absent
	Group   uint16 // portal group tag (0 when the target sent none)
}

// SendTargets sends SendTargets=value ("All" on a discovery session, a
// target name or "" on a normal session) and parses the answer.
func (x *TextExchange) SendTargets(ctx context.Context, t Transport, value string) ([]Target, error) {
	text, err := x.Text(ctx, t, appendText(nil, kv{"SendTargets", value}))
	if err != nil {
		return nil, err
	}
	return ParseSendTargets(text)
}

// ParseSendTargets parses a SendTargets answer: TargetName keys, each
// followed by its TargetAddress keys. Other keys (TargetAlias...) are
// ignored; a TargetAddress before any TargetName is an error. Repeated
// TargetName entries are merged.
func ParseSendTargets(text []byte) ([]Target, error) {
	kvs, err := parseText(text, maxValueLen)
	if err != nil {
		return nil, err
	}
	var out []Target
	index := map[string]int{}
	cur := -1
	for _, p := range kvs {
		switch p.Key {
		case "TargetName":
			if p.Value == "" || len(p.Value) > maxNameLen {
				return nil, protoErr("SendTargets: bad TargetName %q", truncate(p.Value, 64))
			}
			i, ok := index[p.Value]
			if !ok {
				i = len(out)
				index[p.Value] = i
				out = append(out, Target{TargetName: p.Value})
			}
			cur = i
		case "TargetAddress":
			if cur < 0 {
				return nil, protoErr("SendTargets: TargetAddress before TargetName")
			}
			host, port, tag, _, err := ParseTargetAddress(p.Value)
			if err != nil {
				return nil, err
			}
			out[cur].Portals = append(out[cur].Portals, Portal{Address: host, Port: port, Group: tag})
		}
	}
	return out, nil
}
