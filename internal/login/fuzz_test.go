package login

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
	"testing"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/pdu"
)

// fuzzTransport answers each Login Request with the next record of the
// fuzz input: flags, status class, status detail, 16-bit length, text.
// The header fields that must match (ITT, ISID) are echoed so the fuzzer
// reaches the text and state machine; a record with flags 0xff is a raw
// PDU instead.
type fuzzTransport struct {
	data   []byte
	last   pdu.LoginRequest
	sends  int
	statSN uint32
}

func (f *fuzzTransport) SendPDU(_ context.Context, m pdu.Message) error {
	f.sends++
	if req, ok := m.(*pdu.LoginRequest); ok {
		f.last = *req
	}
	return nil
}

func (f *fuzzTransport) RecvPDU(context.Context) ([]byte, error) {
	if len(f.data) < 5 {
		return nil, io.EOF
	}
	flags, class, detail := f.data[0], f.data[1], f.data[2]
	n := min(int(binary.BigEndian.Uint16(f.data[3:5])), len(f.data)-5)
	body := f.data[5 : 5+n]
	f.data = f.data[5+n:]
	if flags == 0xff {
		return body, nil
	}
	f.statSN++
	resp := &pdu.LoginResponse{
		Transit: flags&0x80 != 0, Continue: flags&0x40 != 0,
		CSG: pdu.Stage(flags >> 2 & 3), NSG: pdu.Stage(flags & 3),
		ISID: f.last.ISID, ITT: f.last.ITT, TSIH: 1, StatSN: f.statSN,
		StatusClass: class, StatusDetail: detail, Data: body,
	}
	return resp.Encode(nil), nil
}

type zeroReader struct{ b byte }

func (z *zeroReader) Read(p []byte) (int, error) {
	for i := range p {
		z.b++
		p[i] = z.b
	}
	return len(p), nil
}

func record(flags, class, detail byte, kvs ...kv) []byte {
	text := appendText(nil, kvs...)
	return append([]byte{flags, class, detail, byte(len(text) >> 8), byte(len(text))}, text...)
}

func FuzzLoginResponse(f *testing.F) {
	plain := append(record(0x81, 0, 0, kv{"AuthMethod", "None"}, kv{"TargetPortalGroupTag", "1"}),
		record(0x87, 0, 0, kv{"HeaderDigest", "None"}, kv{"MaxBurstLength", "65536"}, kv{"MaxRecvDataSegmentLength", "8192"})...)
	f.Add(byte(0), plain)
	chap := append(record(0x01, 0, 0, kv{"AuthMethod", "CHAP"}),
		record(0x01, 0, 0, kv{"CHAP_A", "5"}, kv{"CHAP_I", "1"}, kv{"CHAP_C", "0x0102030405060708"})...)
	chap = append(chap, record(0x81, 0, 0, kv{"CHAP_N", "t"}, kv{"CHAP_R", "0x00112233445566778899aabbccddeeff"})...)
	chap = append(chap, record(0x47, 0, 0, kv{"ImmediateData", "Yes"})...)
	chap = append(chap, record(0x87, 0, 0, kv{"X-a", "b"})...)
	f.Add(byte(2), chap)
	f.Add(byte(1), chap)
	f.Add(byte(3), record(0x81, 1, 1, kv{"TargetAddress", "[::1]:3260,1"}))
	f.Add(byte(0), append([]byte{0xff, 0, 0, 0, 48}, make([]byte, 48)...))
	f.Fuzz(func(t *testing.T, mode byte, data []byte) {
		cfg := baseConfig()
		switch mode % 4 {
		case 1:
			cfg.CHAP = &iscsi.CHAP{User: "u", Secret: secretA}
		case 2:
			cfg.CHAP = &iscsi.CHAP{User: "u", Secret: secretA, TargetUser: "t", TargetSecret: secretB}
		case 3:
			cfg.TargetName = ""
		}
		cfg.Rand = &zeroReader{}
		ft := &fuzzTransport{data: data}
		res, err := Login(context.Background(), ft, cfg)
		if ft.sends > maxLoginPDUs {
			t.Fatalf("%d Login Requests sent, bound is %d", ft.sends, maxLoginPDUs)
		}
		if err == nil {
			if res.TSIH == 0 {
				t.Fatal("success with TSIH 0")
			}
			if mode%4 == 2 && res.Negotiated.AuthMethod != "CHAP" {
				t.Fatal("mutual CHAP login succeeded without CHAP")
			}
			if res.Negotiated.MaxXmitDataSegmentLength < 512 {
				t.Fatalf("MaxXmitDataSegmentLength %d", res.Negotiated.MaxXmitDataSegmentLength)
			}
		}
	})
}

func FuzzCHAPChallenge(f *testing.F) {
	f.Add("5", "1", "0x0102030405060708", false)
	f.Add("7", "0x10", "0bAQIDBA==", true)
	f.Add("8", "255", "0x1", true)
	f.Add("6", "256", "0b", false)
	f.Fuzz(func(t *testing.T, a, id, c string, mutual bool) {
		cfg := &iscsi.CHAP{User: "u", Secret: secretA, Algorithms: []iscsi.CHAPAlgorithm{iscsi.CHAPSHA3256, iscsi.CHAPSHA256, iscsi.CHAPSHA1, iscsi.CHAPMD5}}
		if mutual {
			cfg.TargetSecret = secretB
		}
		s := newCHAPState(cfg, &zeroReader{})
		errA := s.handle("CHAP_A", a)
		errI := s.handle("CHAP_I", id)
		errC := s.handle("CHAP_C", c)
		if errA != nil || errI != nil || errC != nil {
			if s.readyToRespond() && (errA != nil || errI != nil) {
				t.Fatal("ready after a failed key")
			}
			return
		}
		if !s.readyToRespond() {
			t.Fatal("all keys accepted but not ready")
		}
		out, err := s.response()
		if err != nil {
			return // reflection (our challenge equals theirs)
		}
		chal, _ := parseBinary(c)
		n, _ := parseNumber(id)
		if want := formatHex(chapResponse(s.alg, byte(n), secretA, chal)); out[1].Value != want {
			t.Fatalf("CHAP_R %s, want %s", out[1].Value, want)
		}
		if mutual && (len(out) != 4 || out[2].Value != strconv.Itoa(int(s.ourID))) {
			t.Fatalf("mutual response %v", out)
		}
	})
}

func FuzzSendTargetsParse(f *testing.F) {
	f.Add(sendTargetsText)
	f.Add([]byte("TargetName=iqn.x\x00TargetAddress=[fe80::1%eth0]:3260,1\x00"))
	f.Add([]byte("TargetAddress=1.2.3.4\x00"))
	f.Add([]byte("\x00\x00=\x00TargetName=\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := ParseSendTargets(data)
		if err != nil {
			return
		}
		// Re-encode and parse again: the same targets come back.
		var kvs []kv
		for _, tg := range got {
			kvs = append(kvs, kv{"TargetName", tg.TargetName})
			for _, p := range tg.Portals {
				host := p.Address
				if len(host) > 0 && (host[0] == '[' || containsColon(host)) {
					host = "[" + host + "]"
				}
				kvs = append(kvs, kv{"TargetAddress", fmt.Sprintf("%s:%d,%d", host, p.Port, p.Group)})
			}
		}
		again, err := ParseSendTargets(appendText(nil, kvs...))
		if err != nil {
			t.Fatalf("re-parse: %v (%q)", err, kvs)
		}
		if fmt.Sprint(again) != fmt.Sprint(got) {
			t.Fatalf("round trip: %v != %v", again, got)
		}
	})
}

func containsColon(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			return true
		}
	}
	return false
}

func TestFuzzHarnessReachesSuccess(t *testing.T) {
	plain := append(record(0x81, 0, 0, kv{"AuthMethod", "None"}),
		record(0x87, 0, 0, kv{"MaxRecvDataSegmentLength", "16384"})...)
	res, err := Login(context.Background(), &fuzzTransport{data: plain}, baseConfig())
	if err != nil {
		t.Fatal(err)
	}
	if res.Negotiated.MaxXmitDataSegmentLength != 16384 {
		t.Fatalf("MaxXmitDataSegmentLength %d", res.Negotiated.MaxXmitDataSegmentLength)
	}
}
