package pdu

// Stage is a login stage (CSG/NSG, RFC 7143 §11.12.3).
type Stage uint8

// Login stages.
const (
	SecurityNegotiation         Stage = 0
	LoginOperationalNegotiation Stage = 1
	FullFeaturePhase            Stage = 3
)

// String names the stage.
func (s Stage) String() string {
	switch s {
	case SecurityNegotiation:
		return "SecurityNegotiation"
	case LoginOperationalNegotiation:
		return "LoginOperationalNegotiation"
	case FullFeaturePhase:
		return "FullFeaturePhase"
	}
	return "Stage(" + itoa(int(s)) + ")"
}

// LoginStatus is a Login Response status: class in the high byte, detail
// in the low byte (RFC 7143 §11.13.5).
type LoginStatus uint16

// Status classes.
const (
	StatusClassSuccess        uint8 = 0
	StatusClassRedirection    uint8 = 1
	StatusClassInitiatorError uint8 = 2
	StatusClassTargetError    uint8 = 3
)

// Login statuses (class<<8 | detail).
const (
	LoginSuccess                 LoginStatus = 0x0000
	LoginTargetMovedTemporarily  LoginStatus = 0x0101
	LoginTargetMovedPermanently  LoginStatus = 0x0102
	LoginInitiatorError          LoginStatus = 0x0200
	LoginAuthenticationFailure   LoginStatus = 0x0201
	LoginAuthorizationFailure    LoginStatus = 0x0202
	LoginNotFound                LoginStatus = 0x0203
	LoginTargetRemoved           LoginStatus = 0x0204
	LoginUnsupportedVersion      LoginStatus = 0x0205
	LoginTooManyConnections      LoginStatus = 0x0206
	LoginMissingParameter        LoginStatus = 0x0207
	LoginCantIncludeInSession    LoginStatus = 0x0208
	LoginSessionTypeNotSupported LoginStatus = 0x0209
	LoginSessionDoesNotExist     LoginStatus = 0x020a
	LoginInvalidDuringLogin      LoginStatus = 0x020b
	LoginTargetError             LoginStatus = 0x0300
	LoginServiceUnavailable      LoginStatus = 0x0301
	LoginOutOfResources          LoginStatus = 0x0302
)

// Class returns the status class.
func (s LoginStatus) Class() uint8 { return uint8(s >> 8) }

// Detail returns the status detail.
func (s LoginStatus) Detail() uint8 { return uint8(s) }

// String names the status.
func (s LoginStatus) String() string {
	switch s {
	case LoginSuccess:
		return "Success"
	case LoginTargetMovedTemporarily:
		return "Target moved temporarily"
	case LoginTargetMovedPermanently:
		return "Target moved permanently"
	case LoginInitiatorError:
		return "Initiator error"
	case LoginAuthenticationFailure:
		return "Authentication failure"
	case LoginAuthorizationFailure:
		return "Authorization failure"
	case LoginNotFound:
		return "Not found"
	case LoginTargetRemoved:
		return "Target removed"
	case LoginUnsupportedVersion:
		return "Unsupported version"
	case LoginTooManyConnections:
		return "Too many connections"
	case LoginMissingParameter:
		return "Missing parameter"
	case LoginCantIncludeInSession:
		return "Can't include in session"
	case LoginSessionTypeNotSupported:
		return "Session type not supported"
	case LoginSessionDoesNotExist:
		return "Session does not exist"
	case LoginInvalidDuringLogin:
		return "Invalid during login"
	case LoginTargetError:
		return "Target error"
	case LoginServiceUnavailable:
		return "Service unavailable"
	case LoginOutOfResources:
		return "Out of resources"
	}
	return "LoginStatus(0x" + hex16(uint16(s)) + ")"
}

func loginFlags(transit, cont bool, csg, nsg Stage) byte {
	f := byte(csg&3)<<2 | byte(nsg&3)
	if transit {
		f |= 0x80
	}
	if cont {
		f |= 0x40
	}
	return f
}

// LoginRequest is a Login Request (opcode 0x03, RFC 7143 §11.12). The I bit
// is always set on the wire for Login Requests; Immediate mirrors it so
// that a decoded request re-encodes byte-identically (NewLoginRequest-style
// construction should set it to true).
type LoginRequest struct {
	Immediate  bool
	Transit    bool // T
	Continue   bool // C
	CSG        Stage
	NSG        Stage
	VersionMax uint8
	VersionMin uint8
	ISID       [6]byte
	TSIH       uint16
	ITT        uint32
	CID        uint16
	CmdSN      uint32
	ExpStatSN  uint32
	AHS        []byte
	Data       []byte // text key=value pairs
}

// Opcode returns OpLoginRequest.
func (*LoginRequest) Opcode() Opcode { return OpLoginRequest }

// DataSegment returns m.Data.
func (m *LoginRequest) DataSegment() []byte { return m.Data }

// AppendHeader appends the BHS and AHS.
func (m *LoginRequest) AppendHeader(dst []byte) []byte {
	dst, h := beginHeader(dst, OpLoginRequest, m.Immediate, loginFlags(m.Transit, m.Continue, m.CSG, m.NSG), len(m.AHS), len(m.Data))
	h[2] = m.VersionMax
	h[3] = m.VersionMin
	copy(h[8:14], m.ISID[:])
	put16(h[14:16], m.TSIH)
	h.putWord(16, m.ITT)
	put16(h[20:22], m.CID)
	h.putWord(24, m.CmdSN)
	h.putWord(28, m.ExpStatSN)
	return appendAHS(dst, m.AHS)
}

// Encode appends header, data and padding.
func (m *LoginRequest) Encode(dst []byte) []byte { return encode(dst, m, m.Data) }

// Decode parses src; Data and AHS alias src.
func (m *LoginRequest) Decode(src []byte) error {
	h, ahs, data, err := split(src, OpLoginRequest)
	if err != nil {
		return err
	}
	m.set(h, ahs, data)
	return nil
}

// DecodeHeader decodes a header as Reader.ReadHeader returns it: the BHS
// and its AHS. Data is left nil (read it with Reader.ReadData).
func (m *LoginRequest) DecodeHeader(h *BHS, ahs []byte) error {
	if err := checkHeader(h, ahs, OpLoginRequest); err != nil {
		return err
	}
	m.set(h, ahs, nil)
	return nil
}

func (m *LoginRequest) set(h *BHS, ahs, data []byte) {
	*m = LoginRequest{
		Immediate:  h.Immediate(),
		Transit:    h[1]&0x80 != 0,
		Continue:   h[1]&0x40 != 0,
		CSG:        Stage(h[1] >> 2 & 3),
		NSG:        Stage(h[1] & 3),
		VersionMax: h[2],
		VersionMin: h[3],
		TSIH:       be16(h[14:16]),
		ITT:        h.word(16),
		CID:        be16(h[20:22]),
		CmdSN:      h.word(24),
		ExpStatSN:  h.word(28),
		AHS:        ahs,
		Data:       data,
	}
	copy(m.ISID[:], h[8:14])
}

// LoginResponse is a Login Response (opcode 0x23, RFC 7143 §11.13).
type LoginResponse struct {
	Transit       bool
	Continue      bool
	CSG           Stage
	NSG           Stage
	VersionMax    uint8
	VersionActive uint8
	ISID          [6]byte
	TSIH          uint16
	ITT           uint32
	StatSN        uint32
	ExpCmdSN      uint32
	MaxCmdSN      uint32
	StatusClass   uint8
	StatusDetail  uint8
	AHS           []byte
	Data          []byte // text key=value pairs
}

// Opcode returns OpLoginResponse.
func (*LoginResponse) Opcode() Opcode { return OpLoginResponse }

// DataSegment returns m.Data.
func (m *LoginResponse) DataSegment() []byte { return m.Data }

// Status returns StatusClass and StatusDetail as one LoginStatus.
func (m *LoginResponse) Status() LoginStatus {
	return LoginStatus(m.StatusClass)<<8 | LoginStatus(m.StatusDetail)
}

// AppendHeader appends the BHS and AHS.
func (m *LoginResponse) AppendHeader(dst []byte) []byte {
	dst, h := beginHeader(dst, OpLoginResponse, false, loginFlags(m.Transit, m.Continue, m.CSG, m.NSG), len(m.AHS), len(m.Data))
	h[2] = m.VersionMax
	h[3] = m.VersionActive
	copy(h[8:14], m.ISID[:])
	put16(h[14:16], m.TSIH)
	h.putWord(16, m.ITT)
	h.putWord(24, m.StatSN)
	h.putWord(28, m.ExpCmdSN)
	h.putWord(32, m.MaxCmdSN)
	h[36] = m.StatusClass
	h[37] = m.StatusDetail
	return appendAHS(dst, m.AHS)
}

// Encode appends header, data and padding.
func (m *LoginResponse) Encode(dst []byte) []byte { return encode(dst, m, m.Data) }

// Decode parses src; Data and AHS alias src.
func (m *LoginResponse) Decode(src []byte) error {
	h, ahs, data, err := split(src, OpLoginResponse)
	if err != nil {
		return err
	}
	m.set(h, ahs, data)
	return nil
}

// DecodeHeader decodes a header as Reader.ReadHeader returns it: the BHS
// and its AHS. Data is left nil (read it with Reader.ReadData).
func (m *LoginResponse) DecodeHeader(h *BHS, ahs []byte) error {
	if err := checkHeader(h, ahs, OpLoginResponse); err != nil {
		return err
	}
	m.set(h, ahs, nil)
	return nil
}

func (m *LoginResponse) set(h *BHS, ahs, data []byte) {
	*m = LoginResponse{
		Transit:       h[1]&0x80 != 0,
		Continue:      h[1]&0x40 != 0,
		CSG:           Stage(h[1] >> 2 & 3),
		NSG:           Stage(h[1] & 3),
		VersionMax:    h[2],
		VersionActive: h[3],
		TSIH:          be16(h[14:16]),
		ITT:           h.word(16),
		StatSN:        h.word(24),
		ExpCmdSN:      h.word(28),
		MaxCmdSN:      h.word(32),
		StatusClass:   h[36],
		StatusDetail:  h[37],
		AHS:           ahs,
		Data:          data,
	}
	copy(m.ISID[:], h[8:14])
}
