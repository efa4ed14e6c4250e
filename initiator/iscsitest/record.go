package iscsitest

import (
	"fmt"
	"time"

	"github.com/gosan/iscsi/pdu"
)

// Direction says who sent a recorded PDU.
type Direction uint8

const (
	// Received PDUs came from the initiator.
	Received Direction = iota
	// Sent PDUs went to the initiator.
	Sent
)

func (d Direction) String() string {
	if d == Sent {
		return "sent"
	}
	return "received"
}

// PDURecord is what the server noted about one PDU. Fields that the
// opcode does not have are zero. For received PDUs CmdSN and ExpStatSN
// are bytes 24..31; for sent PDUs StatSN, ExpCmdSN and MaxCmdSN are.
type PDURecord struct {
	Dir          Direction
	Time         time.Time
	Opcode       pdu.Opcode
	Immediate    bool
	Final        bool
	Flags        byte // byte 1
	LUN          uint64
	ITT          uint32
	TTT          uint32
	CmdSN        uint32
	ExpStatSN    uint32
	StatSN       uint32
	ExpCmdSN     uint32
	MaxCmdSN     uint32
	DataSN       uint32 // Data-In/Data-Out DataSN, R2T R2TSN
	BufferOffset uint32
	DataLength   int
	CDB          [16]byte // SCSI Command only
	EDTL         uint32   // SCSI Command ExpectedDataTransferLength
	Status       uint8    // SCSI Response / Data-In with S
	// Task Management Request: the function and the Referenced Task Tag;
	// Task Management Response: Response.
	Function          pdu.TMFunction
	ReferencedTaskTag uint32
	Response          pdu.TMFResponse
}

func (r PDURecord) String() string {
	return fmt.Sprintf("%s %v I=%v F=%v ITT=%#x TTT=%#x CmdSN=%d StatSN=%d DataSN=%d off=%d len=%d",
		r.Dir, r.Opcode, r.Immediate, r.Final, r.ITT, r.TTT, r.CmdSN, r.StatSN, r.DataSN, r.BufferOffset, r.DataLength)
}

// decodeBHS decodes the fields of the BHS h into m; the record sees only
// the BHS, so an AHS the header announces is left out.
func decodeBHS(m interface{ DecodeHeader(*pdu.BHS, []byte) error }, h *pdu.BHS) {
	bhs := *h
	bhs.SetTotalAHSLength(0)
	_ = m.DecodeHeader(&bhs, nil)
}

// recordHeader fills a PDURecord from a BHS.
func recordHeader(dir Direction, h *pdu.BHS) PDURecord {
	r := PDURecord{
		Dir:        dir,
		Time:       time.Now(),
		Opcode:     h.Opcode(),
		Immediate:  h.Immediate(),
		Final:      h.Final(),
		Flags:      h.Flags(),
		LUN:        h.LUN(),
		ITT:        h.ITT(),
		DataLength: h.DataSegmentLength(),
	}
	if dir == Received {
		r.CmdSN, r.ExpStatSN = h.CmdSN(), h.ExpStatSN()
	} else {
		r.StatSN, r.ExpCmdSN, r.MaxCmdSN = h.StatSN(), h.ExpCmdSN(), h.MaxCmdSN()
	}
	switch h.Opcode() {
	case pdu.OpSCSICommand:
		var m pdu.SCSICommand
		decodeBHS(&m, h)
		copy(r.CDB[:], m.CDB)
		r.EDTL = m.ExpectedDataTransferLength
	case pdu.OpDataOut:
		var m pdu.DataOut
		decodeBHS(&m, h)
		r.TTT, r.DataSN, r.BufferOffset = m.TTT, m.DataSN, m.BufferOffset
		r.CmdSN = 0
	case pdu.OpDataIn:
		var m pdu.DataIn
		decodeBHS(&m, h)
		r.TTT, r.DataSN, r.BufferOffset = m.TTT, m.DataSN, m.BufferOffset
		if m.StatusPresent {
			r.Status = m.Status
		}
	case pdu.OpR2T:
		var m pdu.R2T
		decodeBHS(&m, h)
		r.TTT, r.DataSN, r.BufferOffset = m.TTT, m.R2TSN, m.BufferOffset
	case pdu.OpNOPOut, pdu.OpNOPIn, pdu.OpTextRequest, pdu.OpTextResponse:
		r.TTT = h.TTT()
	case pdu.OpSCSIResponse:
		var m pdu.SCSIResponse
		decodeBHS(&m, h)
		r.Status = m.Status
	case pdu.OpTaskMgmtRequest:
		var m pdu.TaskMgmtRequest
		decodeBHS(&m, h)
		r.Function, r.ReferencedTaskTag = m.Function, m.ReferencedTaskTag
	case pdu.OpTaskMgmtResponse:
		var m pdu.TaskMgmtResponse
		decodeBHS(&m, h)
		r.Response = m.Response
	}
	return r
}

// Violation is a protocol error the server saw in what the initiator
// sent. The server records it and carries on where RFC 7143 lets it.
type Violation struct {
	Conn int
	ITT  uint32
	What string
}

func (v Violation) String() string {
	return fmt.Sprintf("conn %d ITT %#x: %s", v.Conn, v.ITT, v.What)
}

// Ping is one NOP-In ping the server sent with a Target Transfer Tag, and
// when the initiator answered it.
type Ping struct {
	TTT      uint32
	Sent     time.Time
	Answered time.Time // zero if unanswered
}

// ConnRecord is a snapshot of one connection.
type ConnRecord struct {
	ID         int
	Initiator  string // InitiatorName from login
	Target     string // TargetName, empty for discovery
	Discovery  bool
	ISID       [6]byte
	TSIH       uint16
	Closed     bool
	PDUs       []PDURecord
	Violations []Violation
	Pings      []Ping
}

// Filter returns the records with the given direction and opcode.
func (r ConnRecord) Filter(dir Direction, op pdu.Opcode) []PDURecord {
	var out []PDURecord
	for _, p := range r.PDUs {
		if p.Dir == dir && p.Opcode == op {
			out = append(out, p)
		}
	}
	return out
}
