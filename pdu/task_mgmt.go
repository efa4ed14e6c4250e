package pdu

// TMFunction is the Function field of a Task Management Function Request.
type TMFunction uint8

// Task management functions (RFC 7143 §11.5.1).
const (
	TMFAbortTask        TMFunction = 1
	TMFAbortTaskSet     TMFunction = 2
	TMFClearACA         TMFunction = 3
	TMFClearTaskSet     TMFunction = 4
	TMFLogicalUnitReset TMFunction = 5
	TMFTargetWarmReset  TMFunction = 6
	TMFTargetColdReset  TMFunction = 7
	TMFTaskReassign     TMFunction = 8
	// SAM-5 functions added by RFC 7144.
	TMFQueryTask       TMFunction = 9
	TMFQueryTaskSet    TMFunction = 10
	TMFITNexusReset    TMFunction = 11
	TMFQueryAsyncEvent TMFunction = 12
)

// String names the function.
func (f TMFunction) String() string {
	switch f {
	case TMFAbortTask:
		return "ABORT TASK"
	case TMFAbortTaskSet:
		return "ABORT TASK SET"
	case TMFClearACA:
		return "CLEAR ACA"
	case TMFClearTaskSet:
		return "CLEAR TASK SET"
	case TMFLogicalUnitReset:
		return "LOGICAL UNIT RESET"
	case TMFTargetWarmReset:
		return "TARGET WARM RESET"
	case TMFTargetColdReset:
		return "TARGET COLD RESET"
	case TMFTaskReassign:
		return "TASK REASSIGN"
	case TMFQueryTask:
		return "QUERY TASK"
	case TMFQueryTaskSet:
		return "QUERY TASK SET"
	case TMFITNexusReset:
		return "I_T NEXUS RESET"
	case TMFQueryAsyncEvent:
		return "QUERY ASYNCHRONOUS EVENT"
	}
	return "TMFunction(" + itoa(int(f)) + ")"
}

// TMFResponse is the Response field of a Task Management Function Response.
type TMFResponse uint8

// Task management responses (RFC 7143 §11.6.1).
const (
	TMFFunctionComplete         TMFResponse = 0
	TMFTaskDoesNotExist         TMFResponse = 1
	TMFLUNDoesNotExist          TMFResponse = 2
	TMFTaskStillAllegiant       TMFResponse = 3
	TMFReassignmentNotSupported TMFResponse = 4
	TMFNotSupported             TMFResponse = 5
	TMFAuthorizationFailed      TMFResponse = 6
	TMFFunctionRejected         TMFResponse = 255
)

// String names the response.
func (r TMFResponse) String() string {
	switch r {
	case TMFFunctionComplete:
		return "Function complete"
	case TMFTaskDoesNotExist:
		return "Task does not exist"
	case TMFLUNDoesNotExist:
		return "LUN does not exist"
	case TMFTaskStillAllegiant:
		return "Task still allegiant"
	case TMFReassignmentNotSupported:
		return "Task allegiance reassignment not supported"
	case TMFNotSupported:
		return "Task management function not supported"
	case TMFAuthorizationFailed:
		return "Function authorization failed"
	case TMFFunctionRejected:
		return "Function rejected"
	}
	return "TMFResponse(" + itoa(int(r)) + ")"
}

// TaskMgmtRequest is a Task Management Function Request (opcode 0x02,
// RFC 7143 §11.5).
type TaskMgmtRequest struct {
	Immediate         bool
	Function          TMFunction
	LUN               uint64
	ITT               uint32
	ReferencedTaskTag uint32 // ITT of the task to abort, or ReservedTag
	CmdSN             uint32
	ExpStatSN         uint32
	RefCmdSN          uint32
	ExpDataSN         uint32
	AHS               []byte
	Data              []byte
}

// Opcode returns OpTaskMgmtRequest.
func (*TaskMgmtRequest) Opcode() Opcode { return OpTaskMgmtRequest }

// DataSegment returns m.Data.
func (m *TaskMgmtRequest) DataSegment() []byte { return m.Data }

// AppendHeader appends the BHS and AHS.
func (m *TaskMgmtRequest) AppendHeader(dst []byte) []byte {
	dst, h := beginHeader(dst, OpTaskMgmtRequest, m.Immediate, 0x80|byte(m.Function)&0x7f, len(m.AHS), len(m.Data))
	h.SetLUN(m.LUN)
	h.putWord(16, m.ITT)
	h.putWord(20, m.ReferencedTaskTag)
	h.putWord(24, m.CmdSN)
	h.putWord(28, m.ExpStatSN)
	h.putWord(32, m.RefCmdSN)
	h.putWord(36, m.ExpDataSN)
	return appendAHS(dst, m.AHS)
}

// Encode appends header, data and padding.
func (m *TaskMgmtRequest) Encode(dst []byte) []byte { return encode(dst, m, m.Data) }

// Decode parses src; Data and AHS alias src.
func (m *TaskMgmtRequest) Decode(src []byte) error {
	h, ahs, data, err := split(src, OpTaskMgmtRequest)
	if err != nil {
		return err
	}
	m.set(h, ahs, data)
	return nil
}

// DecodeHeader decodes a header as Reader.ReadHeader returns it: the BHS
// and its AHS. Data is left nil (read it with Reader.ReadData).
func (m *TaskMgmtRequest) DecodeHeader(h *BHS, ahs []byte) error {
	if err := checkHeader(h, ahs, OpTaskMgmtRequest); err != nil {
		return err
	}
	m.set(h, ahs, nil)
	return nil
}

func (m *TaskMgmtRequest) set(h *BHS, ahs, data []byte) {
	*m = TaskMgmtRequest{
		Immediate:         h.Immediate(),
		Function:          TMFunction(h[1] & 0x7f),
		LUN:               h.LUN(),
		ITT:               h.word(16),
		ReferencedTaskTag: h.word(20),
		CmdSN:             h.word(24),
		ExpStatSN:         h.word(28),
		RefCmdSN:          h.word(32),
		ExpDataSN:         h.word(36),
		AHS:               ahs,
		Data:              data,
	}
}

// TaskMgmtResponse is a Task Management Function Response (opcode 0x22,
// RFC 7143 §11.6).
type TaskMgmtResponse struct {
	Response TMFResponse
	ITT      uint32
	StatSN   uint32
	ExpCmdSN uint32
	MaxCmdSN uint32
	AHS      []byte
	Data     []byte
}

// Opcode returns OpTaskMgmtResponse.
func (*TaskMgmtResponse) Opcode() Opcode { return OpTaskMgmtResponse }

// DataSegment returns m.Data.
func (m *TaskMgmtResponse) DataSegment() []byte { return m.Data }

// AppendHeader appends the BHS and AHS.
func (m *TaskMgmtResponse) AppendHeader(dst []byte) []byte {
	dst, h := beginHeader(dst, OpTaskMgmtResponse, false, 0x80, len(m.AHS), len(m.Data))
	h[2] = byte(m.Response)
	h.putWord(16, m.ITT)
	h.putWord(24, m.StatSN)
	h.putWord(28, m.ExpCmdSN)
	h.putWord(32, m.MaxCmdSN)
	return appendAHS(dst, m.AHS)
}

// Encode appends header, data and padding.
func (m *TaskMgmtResponse) Encode(dst []byte) []byte { return encode(dst, m, m.Data) }

// Decode parses src; Data and AHS alias src.
func (m *TaskMgmtResponse) Decode(src []byte) error {
	h, ahs, data, err := split(src, OpTaskMgmtResponse)
	if err != nil {
		return err
	}
	m.set(h, ahs, data)
	return nil
}

// DecodeHeader decodes a header as Reader.ReadHeader returns it: the BHS
// and its AHS. Data is left nil (read it with Reader.ReadData).
func (m *TaskMgmtResponse) DecodeHeader(h *BHS, ahs []byte) error {
	if err := checkHeader(h, ahs, OpTaskMgmtResponse); err != nil {
		return err
	}
	m.set(h, ahs, nil)
	return nil
}

func (m *TaskMgmtResponse) set(h *BHS, ahs, data []byte) {
	*m = TaskMgmtResponse{
		Response: TMFResponse(h[2]),
		ITT:      h.word(16),
		StatSN:   h.word(24),
		ExpCmdSN: h.word(28),
		MaxCmdSN: h.word(32),
		AHS:      ahs,
		Data:     data,
	}
}
