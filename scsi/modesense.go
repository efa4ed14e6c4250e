package scsi

import "encoding/binary"

// ModeSense is parsed MODE SENSE(6) or (10) data.
type ModeSense struct {
	DataLength     int   // MODE DATA LENGTH + the size of that field: the total length announced
	MediumType     uint8 // MEDIUM TYPE
	DeviceSpecific uint8 // DEVICE-SPECIFIC PARAMETER, raw
	WP             bool  // write protected (direct access devices)
	DPOFUA         bool  // DPO and FUA supported (direct access devices)
	LongLBA        bool  // MODE SENSE(10): block descriptors are 16 bytes
	Blocks         []BlockDescriptor
	Pages          []ModePage
}

// BlockDescriptor is a direct access (SBC) mode parameter block descriptor,
// short (8 bytes) or long LBA (16 bytes).
type BlockDescriptor struct {
	Blocks      uint64 // NUMBER OF LOGICAL BLOCKS
	BlockLength uint32 // LOGICAL BLOCK LENGTH
}

// ModePage is one mode page, its parameters as raw bytes.
type ModePage struct {
	Code    uint8 // PAGE CODE (6 bits)
	Subpage uint8 // SUBPAGE CODE (0 in page_0 format)
	SPF     bool  // subpage format
	PS      bool  // parameters saveable
	Data    []byte
}

// Page returns the first page with the given code and subpage.
func (m *ModeSense) Page(code, subpage uint8) (ModePage, bool) {
	for _, p := range m.Pages {
		if p.Code == code && p.Subpage == subpage {
			return p, true
		}
	}
	return ModePage{}, false
}

// Mode page codes commonly asked for.
const (
	ModePageReadWriteErrorRecovery = 0x01
	ModePageDisconnectReconnect    = 0x02
	ModePageCaching                = 0x08
	ModePageControl                = 0x0a
	ModePageInformationalException = 0x1c
)

// ParseModeSense6 parses MODE SENSE(6) data.
func ParseModeSense6(b []byte) (ModeSense, error) {
	const what = "MODE SENSE(6) data"
	var m ModeSense
	if len(b) < 4 {
		return m, truncated(what, 4, len(b))
	}
	m.DataLength = 1 + int(b[0])
	m.MediumType = b[1]
	m.setDeviceSpecific(b[2])
	return m, m.parseRest(what, b, 4, int(b[3]))
}

// ParseModeSense10 parses MODE SENSE(10) data.
func ParseModeSense10(b []byte) (ModeSense, error) {
	const what = "MODE SENSE(10) data"
	var m ModeSense
	if len(b) < 8 {
		return m, truncated(what, 8, len(b))
	}
	m.DataLength = 2 + int(binary.BigEndian.Uint16(b))
	m.MediumType = b[2]
	m.setDeviceSpecific(b[3])
	m.LongLBA = b[4]&1 != 0
	return m, m.parseRest(what, b, 8, int(binary.BigEndian.Uint16(b[6:])))
}

func (m *ModeSense) setDeviceSpecific(v uint8) {
	m.DeviceSpecific = v
	m.WP = v&0x80 != 0
	m.DPOFUA = v&0x10 != 0
}

func (m *ModeSense) parseRest(what string, b []byte, hdr, bdl int) error {
	if m.DataLength > len(b) {
		return truncated(what, m.DataLength, len(b))
	}
	b = b[:m.DataLength]
	if hdr+bdl > len(b) {
		return malformed(what, len(b), "block descriptor length %d runs past the mode data length %d", bdl, m.DataLength)
	}
	dlen := 8
	if m.LongLBA {
		dlen = 16
	}
	if bdl%dlen != 0 {
		return malformed(what, len(b), "block descriptor length %d not a multiple of %d", bdl, dlen)
	}
	pages := b[hdr+bdl:]
	// Validate the pages and count them before allocating.
	n := 0
	for off := 0; off < len(pages); n++ {
		end, err := modePageEnd(pages, off)
		if err != nil {
			return malformed(what, len(b), "mode page at offset %d: %v", hdr+bdl+off, err)
		}
		off = end
	}
	if bdl > 0 {
		m.Blocks = make([]BlockDescriptor, bdl/dlen)
		for i := range m.Blocks {
			d := b[hdr+i*dlen:]
			if m.LongLBA {
				m.Blocks[i] = BlockDescriptor{Blocks: binary.BigEndian.Uint64(d), BlockLength: binary.BigEndian.Uint32(d[12:])}
			} else {
				m.Blocks[i] = BlockDescriptor{Blocks: uint64(binary.BigEndian.Uint32(d)), BlockLength: binary.BigEndian.Uint32(d[4:]) & 0xffffff}
			}
		}
	}
	if n == 0 {
		return nil
	}
	data := append([]byte(nil), pages...)
	m.Pages = make([]ModePage, 0, n)
	for off := 0; off < len(data); {
		end, _ := modePageEnd(data, off)
		p := ModePage{PS: data[off]&0x80 != 0, SPF: data[off]&0x40 != 0, Code: data[off] & 0x3f}
		if p.SPF {
			p.Subpage = data[off+1]
			p.Data = data[off+4 : end : end]
		} else {
			p.Data = data[off+2 : end : end]
		}
		m.Pages = append(m.Pages, p)
		off = end
	}
	return nil
}

type modePageErr string

func (e modePageErr) Error() string { return string(e) }

func modePageEnd(p []byte, off int) (int, error) {
	if off+2 > len(p) {
		return 0, modePageErr("header cut by the end of the data")
	}
	if p[off]&0x40 != 0 {
		if off+4 > len(p) {
			return 0, modePageErr("subpage header cut by the end of the data")
		}
		end := off + 4 + int(binary.BigEndian.Uint16(p[off+2:]))
		if end > len(p) {
			return 0, modePageErr("subpage runs past the end of the data")
		}
		return end, nil
	}
	end := off + 2 + int(p[off+1])
	if end > len(p) {
		return 0, modePageErr("page runs past the end of the data")
	}
	return end, nil
}
