package login

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/pdu"
)

// testTarget is a scripted iSCSI target for the login engine. It is an
// in-memory Transport: SendPDU runs the target on the encoded request and
// queues the encoded responses RecvPDU returns.
type testTarget struct {
	t *testing.T

	// Configuration.
	chapUser, chapSecret     string                // non-empty: target requires CHAP
	mutualUser, mutualSecret string                // target's own credentials
	algs                     []iscsi.CHAPAlgorithm // default {MD5}
	digests                  []string              // acceptable digests, default {None}
	declareMRDSL             string                // "" omits MaxRecvDataSegmentLength (tgtd)
	lioStyle                 bool                  // omit keys our offer fixes, send TPGT/alias first
	override                 map[string]string
	omit                     map[string]bool
	propose                  []kv   // keys the target proposes in the first operational response
	firstStatus              uint16 // fail the first request with this status
	statusText               []byte // text of the failing response
	neverTransit             bool
	chunk                    int // split response text into C-bit pieces of this size
	challenge                []byte
	chapID                   byte
	hook                     func(req *pdu.LoginRequest, resp *pdu.LoginResponse)
	wrongMutual              bool // answer mutual CHAP with a wrong secret
	skipMutual               bool // answer mutual CHAP with nothing

	// State.
	reqs     []*pdu.LoginRequest
	queue    [][]byte
	acc      []byte // continued request text
	pending  [][]byte
	statSN   uint32
	authDone bool
	alg      iscsi.CHAPAlgorithm
	gotCHAPA bool
	answered map[string]bool
	proposed bool
	sawReply map[string]string
	failed   bool
	tsih     uint16
	keysSeen []kv
}

func newTarget(t *testing.T) *testTarget {
	return &testTarget{t: t, statSN: 100, tsih: 7, challenge: []byte("0123456789abcdef"), chapID: 9,
		answered: map[string]bool{}, sawReply: map[string]string{}, override: map[string]string{}, omit: map[string]bool{}}
}

func (tt *testTarget) SendPDU(ctx context.Context, m pdu.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	raw := m.Encode(nil)
	dec, err := pdu.Decode(raw)
	if err != nil {
		return err
	}
	req, ok := dec.(*pdu.LoginRequest)
	if !ok {
		return fmt.Errorf("fake target: got %v", dec.Opcode())
	}
	cp := *req
	cp.Data = append([]byte(nil), req.Data...)
	tt.reqs = append(tt.reqs, &cp)
	tt.serve(&cp)
	return nil
}

func (tt *testTarget) RecvPDU(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(tt.queue) == 0 {
		return nil, errors.New("fake target: nothing to receive")
	}
	b := tt.queue[0]
	tt.queue = tt.queue[1:]
	return b, nil
}

func (tt *testTarget) respond(req *pdu.LoginRequest, transit, cont bool, nsg pdu.Stage, data []byte, status uint16) {
	resp := &pdu.LoginResponse{
		Transit: transit, Continue: cont, CSG: req.CSG, NSG: nsg,
		ISID: req.ISID, ITT: req.ITT, StatSN: tt.statSN, ExpCmdSN: req.CmdSN, MaxCmdSN: req.CmdSN + 128,
		StatusClass: uint8(status >> 8), StatusDetail: uint8(status), Data: data,
	}
	if transit && nsg == pdu.FullFeaturePhase {
		resp.TSIH = tt.tsih
	}
	tt.statSN++
	if tt.hook != nil {
		tt.hook(req, resp)
	}
	tt.queue = append(tt.queue, resp.Encode(nil))
}

func (tt *testTarget) serve(req *pdu.LoginRequest) {
	if !req.Immediate {
		tt.t.Errorf("Login Request without the Immediate bit")
	}
	if len(tt.pending) > 0 { // the initiator pulls the rest of our text
		if len(req.Data) != 0 || req.Transit || req.Continue {
			tt.t.Errorf("pull request carries T, C or text")
		}
		p := tt.pending[0]
		tt.pending = tt.pending[1:]
		last := len(tt.pending) == 0
		tt.respond(req, false, !last, req.NSG, p, 0)
		return
	}
	if req.Continue {
		tt.acc = append(tt.acc, req.Data...)
		tt.respond(req, false, false, req.NSG, nil, 0)
		return
	}
	text := append(tt.acc, req.Data...)
	tt.acc = nil
	if tt.firstStatus != 0 && len(tt.reqs) == 1 {
		tt.respond(req, true, false, req.NSG, tt.statusText, tt.firstStatus)
		return
	}
	kvs, err := parseText(text, 1<<20)
	if err != nil {
		tt.t.Errorf("target: bad text from initiator: %v", err)
	}
	tt.keysSeen = append(tt.keysSeen, kvs...)
	var out []kv
	var status uint16
	ready := true
	if req.CSG == pdu.SecurityNegotiation {
		out, status, ready = tt.security(kvs)
	} else {
		out = tt.operational(kvs)
	}
	if status != 0 {
		tt.respond(req, true, false, req.NSG, nil, status)
		return
	}
	if tt.lioStyle && len(tt.reqs) == 1 {
		out = append(out, kv{"TargetAlias", "lio-disk"}, kv{"TargetPortalGroupTag", "1"})
	}
	transit := req.Transit && ready && !tt.neverTransit
	data := appendText(nil, out...)
	if tt.chunk > 0 && len(data) > tt.chunk {
		for len(data) > tt.chunk {
			tt.pending = append(tt.pending, data[:tt.chunk])
			data = data[tt.chunk:]
		}
		tt.pending = append(tt.pending, data)
		first := tt.pending[0]
		tt.pending = tt.pending[1:]
		tt.respond(req, false, true, req.NSG, first, 0)
		if transit {
			tt.t.Logf("target: transit dropped because of continuation")
		}
		return
	}
	tt.respond(req, transit, false, req.NSG, data, 0)
}

func (tt *testTarget) security(kvs []kv) (out []kv, status uint16, ready bool) {
	m := map[string]string{}
	for _, p := range kvs {
		m[p.Key] = p.Value
	}
	if v, ok := m["AuthMethod"]; ok {
		offers := strings.Split(v, ",")
		switch {
		case tt.chapUser != "" && slices.Contains(offers, "CHAP"):
			out = append(out, kv{"AuthMethod", "CHAP"})
		case tt.chapUser == "" && slices.Contains(offers, "None"):
			out = append(out, kv{"AuthMethod", "None"})
			tt.authDone = true
		default:
			return nil, 0x0201, false
		}
		if tt.override["AuthMethod"] != "" {
			out[0].Value = tt.override["AuthMethod"]
			tt.authDone = out[0].Value == "None"
		}
	}
	if v, ok := m["CHAP_A"]; ok {
		algs := tt.algs
		if algs == nil {
			algs = []iscsi.CHAPAlgorithm{iscsi.CHAPMD5}
		}
		for _, s := range strings.Split(v, ",") {
			n, _ := strconv.Atoi(s)
			if slices.Contains(algs, iscsi.CHAPAlgorithm(n)) {
				tt.alg = iscsi.CHAPAlgorithm(n)
				break
			}
		}
		if tt.alg == 0 {
			return []kv{{"CHAP_A", "Reject"}}, 0, false
		}
		out = append(out, kv{"CHAP_A", strconv.Itoa(int(tt.alg))}, kv{"CHAP_I", strconv.Itoa(int(tt.chapID))}, kv{"CHAP_C", formatHex(tt.challenge)})
	}
	if r, ok := m["CHAP_R"]; ok {
		got, err := parseBinary(r)
		want := chapResponse(tt.alg, tt.chapID, tt.chapSecret, tt.challenge)
		if err != nil || m["CHAP_N"] != tt.chapUser || string(got) != string(want) {
			return nil, 0x0201, false
		}
		tt.authDone = true
		if c, ok := m["CHAP_C"]; ok && !tt.skipMutual {
			id, _ := strconv.Atoi(m["CHAP_I"])
			chal, err := parseBinary(c)
			if err != nil {
				tt.t.Errorf("target: bad initiator CHAP_C: %v", err)
			}
			secret := tt.mutualSecret
			if tt.wrongMutual {
				secret = "not-the-right-secret"
			}
			out = append(out, kv{"CHAP_N", tt.mutualUser}, kv{"CHAP_R", formatHex(chapResponse(tt.alg, byte(id), secret, chal))})
		}
	}
	return out, 0, tt.authDone
}

// operational answers like tgtd (defaults) unless configured otherwise.
func (tt *testTarget) operational(kvs []kv) []kv {
	var out []kv
	if !tt.proposed {
		tt.proposed = true
		out = append(out, tt.propose...)
	}
	if tt.declareMRDSL != "" && !tt.answered["MaxRecvDataSegmentLength"] {
		tt.answered["MaxRecvDataSegmentLength"] = true
		out = append(out, kv{"MaxRecvDataSegmentLength", tt.declareMRDSL})
	}
	for _, p := range kvs {
		if slices.ContainsFunc(tt.propose, func(x kv) bool { return x.Key == p.Key }) {
			tt.sawReply[p.Key] = p.Value
			continue
		}
		if tt.answered[p.Key] {
			tt.sawReply[p.Key] = p.Value
			continue
		}
		tt.answered[p.Key] = true
		if tt.omit[p.Key] {
			continue
		}
		if v, ok := tt.override[p.Key]; ok {
			out = append(out, kv{p.Key, v})
			continue
		}
		num := func(def uint64, useMin bool) string {
			x, _ := strconv.ParseUint(p.Value, 10, 64)
			if useMin {
				return strconv.FormatUint(min(x, def), 10)
			}
			return strconv.FormatUint(max(x, def), 10)
		}
		var ans string
		switch p.Key {
		case "HeaderDigest", "DataDigest":
			acc := tt.digests
			if acc == nil {
				acc = []string{"None"}
			}
			ans = "Reject"
			for _, v := range strings.Split(p.Value, ",") {
				if slices.Contains(acc, v) {
					ans = v
					break
				}
			}
		case "MaxRecvDataSegmentLength":
			continue // declarative
		case "InitialR2T", "DataPDUInOrder", "DataSequenceInOrder":
			if tt.lioStyle && (p.Value == "Yes" || p.Key != "InitialR2T") {
				continue // fixed by the offer (OR with Yes), or LIO never echoes
			}
			ans = "Yes"
		case "ImmediateData":
			ans = p.Value
		case "IFMarker", "OFMarker":
			if tt.lioStyle {
				continue
			}
			ans = "No"
		case "MaxBurstLength":
			ans = num(262144, true)
		case "FirstBurstLength":
			ans = num(65536, true)
		case "MaxOutstandingR2T", "MaxConnections":
			ans = num(1, true)
		case "DefaultTime2Wait":
			ans = num(2, false)
		case "DefaultTime2Retain":
			ans = num(20, true)
		case "ErrorRecoveryLevel":
			ans = num(0, true)
		default:
			ans = "NotUnderstood"
		}
		out = append(out, kv{p.Key, ans})
	}
	return out
}

// sent returns the keys of request i.
func (tt *testTarget) sent(i int) map[string]string {
	kvs, err := parseText(tt.reqs[i].Data, 1<<20)
	if err != nil {
		tt.t.Fatalf("request %d: %v", i, err)
	}
	m := map[string]string{}
	for _, p := range kvs {
		m[p.Key] = p.Value
	}
	return m
}
