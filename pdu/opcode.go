package pdu

import "strconv"

// Opcode is the 6-bit iSCSI opcode in byte 0 of the BHS.
type Opcode uint8

// Initiator opcodes.
const (
	OpNOPOut          Opcode = 0x00
	OpSCSICommand     Opcode = 0x01
	OpTaskMgmtRequest Opcode = 0x02
	OpLoginRequest    Opcode = 0x03
	OpTextRequest     Opcode = 0x04
	OpDataOut         Opcode = 0x05
	OpLogoutRequest   Opcode = 0x06
	OpSNACK           Opcode = 0x10
)

// Target opcodes.
const (
	OpNOPIn            Opcode = 0x20
	OpSCSIResponse     Opcode = 0x21
	OpTaskMgmtResponse Opcode = 0x22
	OpLoginResponse    Opcode = 0x23
	OpTextResponse     Opcode = 0x24
	OpDataIn           Opcode = 0x25
	OpLogoutResponse   Opcode = 0x26
	OpR2T              Opcode = 0x31
	OpAsyncMessage     Opcode = 0x32
	OpReject           Opcode = 0x3f
)

// String returns the RFC 7143 name of the opcode, or "Opcode(0xNN)" for an
// opcode this package does not know.
func (o Opcode) String() string {
	switch o {
	case OpNOPOut:
		return "NOP-Out"
	case OpSCSICommand:
		return "SCSI Command"
	case OpTaskMgmtRequest:
		return "Task Management Function Request"
	case OpLoginRequest:
		return "Login Request"
	case OpTextRequest:
		return "Text Request"
	case OpDataOut:
		return "SCSI Data-Out"
	case OpLogoutRequest:
		return "Logout Request"
	case OpSNACK:
		return "SNACK Request"
	case OpNOPIn:
		return "NOP-In"
	case OpSCSIResponse:
		return "SCSI Response"
	case OpTaskMgmtResponse:
		return "Task Management Function Response"
	case OpLoginResponse:
		return "Login Response"
	case OpTextResponse:
		return "Text Response"
	case OpDataIn:
		return "SCSI Data-In"
	case OpLogoutResponse:
		return "Logout Response"
	case OpR2T:
		return "Ready To Transfer (R2T)"
	case OpAsyncMessage:
		return "Asynchronous Message"
	case OpReject:
		return "Reject"
	}
	return "Opcode(0x" + strconv.FormatUint(uint64(o), 16) + ")"
}

// Known reports whether o is one of the 18 opcodes defined by RFC 7143.
func (o Opcode) Known() bool {
	switch o {
	case OpNOPOut, OpSCSICommand, OpTaskMgmtRequest, OpLoginRequest, OpTextRequest,
		OpDataOut, OpLogoutRequest, OpSNACK, OpNOPIn, OpSCSIResponse, OpTaskMgmtResponse,
		OpLoginResponse, OpTextResponse, OpDataIn, OpLogoutResponse, OpR2T, OpAsyncMessage, OpReject:
		return true
	}
	return false
}

// Initiator reports whether o is an initiator (request) opcode.
func (o Opcode) Initiator() bool { return o&0x20 == 0 }
