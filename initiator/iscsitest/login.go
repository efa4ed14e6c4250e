package iscsitest

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"github.com/gosan/iscsi/pdu"
)

// negotiated holds the session parameters after login.
type negotiated struct {
	headerDigest, dataDigest bool
	xmitMRDSL                int // the initiator's MaxRecvDataSegmentLength: our Data-In limit
	recvMRDSL                int // ours
	firstBurst, maxBurst     int
	maxR2T                   int
	initialR2T, immediate    bool
}

var errLoginFailed = errors.New("iscsitest: login failed")

func chapHash(alg int) hash.Hash {
	switch alg {
	case CHAPMD5:
		return md5.New()
	case CHAPSHA1:
		return sha1.New()
	case CHAPSHA256:
		return sha256.New()
	case CHAPSHA3:
		return sha3.New256()
	}
	return nil
}

// CHAPResponse computes a CHAP_R value, H(id || secret || challenge), for
// tests that play the initiator.
func CHAPResponse(alg int, id byte, secret string, challenge []byte) []byte {
	h := chapHash(alg)
	if h == nil {
		return nil
	}
	h.Write([]byte{id})
	h.Write([]byte(secret))
	h.Write(challenge)
	return h.Sum(nil)
}

// loginState is the target side of one login.
type loginState struct {
	c         *conn
	keys      map[string]string // everything the initiator declared so far
	chap      *CHAPConfig
	authDone  bool
	chapAlg   int
	chapID    byte
	chapChal  []byte
	chapPhase int // 0 none, 1 sent AuthMethod=CHAP, 2 sent challenge
	tpgtSent  bool
	neg       negotiated
	answered  map[string]bool
}

func (c *conn) loginFail(req *pdu.LoginRequest, st pdu.LoginStatus) error {
	resp := &pdu.LoginResponse{
		CSG: req.CSG, NSG: req.NSG, VersionMax: 0, VersionActive: 0,
		ISID: req.ISID, TSIH: req.TSIH, ITT: req.ITT,
		StatusClass: st.Class(), StatusDetail: st.Detail(),
	}
	_ = c.send(out{m: resp, sn: snAdvance})
	return fmt.Errorf("%w: status %#04x (%v)", errLoginFailed, uint16(st), st)
}

// login runs the login phase; on success the connection is in full
// feature phase.
func (c *conn) login() error {
	ls := &loginState{c: c, keys: map[string]string{}, answered: map[string]bool{}}
	c.r.SetMaxDataSegmentLength(8192)
	var buf []byte
	var text []byte // accumulated C-bit text
	first := true
	for i := 0; i < maxLoginPDUs; i++ {
		var err error
		buf, err = c.r.ReadPDU(buf[:0])
		if err != nil {
			return err
		}
		m, err := pdu.Decode(buf)
		if err != nil {
			return err
		}
		c.recordPDU(Received, (*pdu.BHS)(buf[:pdu.BHSLen]))
		req, ok := m.(*pdu.LoginRequest)
		if !ok {
			return fmt.Errorf("%w: %v during login", errLoginFailed, m.Opcode())
		}
		if first {
			c.isid, c.tsih = req.ISID, req.TSIH
			c.expCmdSN = req.CmdSN
			first = false
			if !req.Immediate && !c.s.cfg.AcceptNonImmediateLogin {
				return c.loginFail(req, pdu.LoginInitiatorError)
			}
			if req.VersionMin > 0 {
				return c.loginFail(req, pdu.LoginUnsupportedVersion)
			}
		}
		if len(text)+len(req.Data) > 64<<10 {
			return c.loginFail(req, pdu.LoginOutOfResources)
		}
		text = append(text, req.Data...)
		if req.Continue {
			// More text follows: acknowledge with an empty response.
			resp := &pdu.LoginResponse{CSG: req.CSG, NSG: req.NSG, ISID: req.ISID, TSIH: req.TSIH, ITT: req.ITT}
			if err := c.send(out{m: resp, sn: snAdvance}); err != nil {
				return err
			}
			continue
		}
		kvs, err := pdu.ParseText(text)
		text = text[:0]
		if err != nil {
			return c.loginFail(req, pdu.LoginInitiatorError)
		}
		done, err := ls.step(req, kvs)
		if err != nil || done {
			return err
		}
	}
	return fmt.Errorf("%w: more than %d login PDUs", errLoginFailed, maxLoginPDUs)
}

// step handles one complete login request; done reports the move to full
// feature phase.
func (ls *loginState) step(req *pdu.LoginRequest, kvs []pdu.KV) (bool, error) {
	c := ls.c
	var answer []pdu.KV
	for _, kv := range kvs {
		ls.keys[kv.Key] = kv.Value
	}
	// Identify the session on the first request that names it.
	if c.initiator == "" {
		c.initiator = ls.keys["InitiatorName"]
		if c.initiator == "" {
			return false, c.loginFail(req, pdu.LoginMissingParameter)
		}
		switch ls.keys["SessionType"] {
		case "Discovery":
			c.discovery = true
			ls.chap = c.s.cfg.DiscoveryCHAP
		case "", "Normal":
			name := ls.keys["TargetName"]
			t := c.s.targets[name]
			if t == nil {
				return false, c.loginFail(req, pdu.LoginNotFound)
			}
			if !t.allowed(c.initiator) {
				return false, c.loginFail(req, pdu.LoginAuthorizationFailure)
			}
			c.tgt, c.targetName = t, name
			ls.chap = t.cfg.CHAP
		default:
			return false, c.loginFail(req, pdu.LoginSessionTypeNotSupported)
		}
	}
	transit := req.Transit
	switch req.CSG {
	case pdu.SecurityNegotiation:
		var err error
		answer, transit, err = ls.security(req, kvs)
		if err != nil {
			return false, err
		}
	case pdu.LoginOperationalNegotiation:
		if ls.chap != nil && !ls.authDone {
			return false, c.loginFail(req, pdu.LoginAuthenticationFailure)
		}
		answer = ls.operational(kvs)
	default:
		return false, c.loginFail(req, pdu.LoginInitiatorError)
	}
	if !ls.tpgtSent && !c.discovery {
		answer = append(answer, pdu.KV{Key: "TargetPortalGroupTag", Value: strconv.Itoa(c.s.cfg.Negotiation.PortalGroupTag)})
		if a := c.tgt.cfg.Alias; a != "" {
			answer = append(answer, pdu.KV{Key: "TargetAlias", Value: a})
		}
		ls.tpgtSent = true
	}
	resp := &pdu.LoginResponse{
		CSG: req.CSG, ISID: req.ISID, TSIH: req.TSIH, ITT: req.ITT,
		Data: pdu.AppendText(nil, answer...),
	}
	if len(resp.Data) > 8192 {
		return false, c.loginFail(req, pdu.LoginOutOfResources)
	}
	ffp := false
	if transit {
		resp.Transit, resp.NSG = true, req.NSG
		if req.NSG == pdu.FullFeaturePhase {
			if req.CSG == pdu.SecurityNegotiation {
				ls.operational(nil) // defaults for everything
			}
			ffp = true
			key := sessionKey{initiator: c.initiator, isid: req.ISID, target: c.targetName}
			ss, st := c.s.register(c, key, req.TSIH)
			if st != pdu.LoginSuccess {
				return false, c.loginFail(req, st)
			}
			c.sess = ss
			resp.TSIH = ss.tsih
			c.tsih = ss.tsih
		}
	} else {
		resp.NSG = req.CSG
	}
	if err := c.send(out{m: resp, sn: snAdvance}); err != nil {
		return false, err
	}
	if ffp {
		c.neg = ls.neg
	}
	return ffp, nil
}

func (ls *loginState) security(req *pdu.LoginRequest, kvs []pdu.KV) ([]pdu.KV, bool, error) {
	c := ls.c
	var answer []pdu.KV
	get := func(k string) (string, bool) {
		for _, kv := range kvs {
			if kv.Key == k {
				return kv.Value, true
			}
		}
		return "", false
	}
	if am, ok := get("AuthMethod"); ok {
		offered := pdu.SplitList(am)
		want := "None"
		if ls.chap != nil {
			want = "CHAP"
		}
		found := false
		for _, o := range offered {
			if o == want {
				found = true
			}
		}
		if !found {
			return nil, false, c.loginFail(req, pdu.LoginAuthenticationFailure)
		}
		answer = append(answer, pdu.KV{Key: "AuthMethod", Value: want})
		if ls.chap == nil {
			ls.authDone = true
		} else {
			ls.chapPhase = 1
		}
	}
	// Operational keys may come in the security stage too.
	for _, kv := range kvs {
		if strings.HasPrefix(kv.Key, "CHAP_") || kv.Key == "AuthMethod" || isDeclarative(kv.Key) {
			continue
		}
		answer = append(answer, ls.operational([]pdu.KV{kv})...)
	}
	if ls.chap != nil {
		switch {
		case ls.chapPhase == 1:
			if a, ok := get("CHAP_A"); ok {
				ls.chapAlg = 0
				accept := ls.chap.Algorithms
				if len(accept) == 0 {
					accept = []int{CHAPSHA256, CHAPSHA1, CHAPMD5}
				}
				for _, o := range pdu.SplitList(a) {
					n, err := strconv.Atoi(o)
					if err != nil {
						continue
					}
					for _, acc := range accept {
						if acc == n && chapHash(n) != nil && ls.chapAlg == 0 {
							ls.chapAlg = n
						}
					}
				}
				if ls.chapAlg == 0 {
					return nil, false, c.loginFail(req, pdu.LoginAuthenticationFailure)
				}
				var id [1]byte
				rand.Read(id[:])
				ls.chapID = id[0]
				ls.chapChal = make([]byte, 16)
				rand.Read(ls.chapChal)
				answer = append(answer,
					pdu.KV{Key: "CHAP_A", Value: strconv.Itoa(ls.chapAlg)},
					pdu.KV{Key: "CHAP_I", Value: strconv.Itoa(int(ls.chapID))},
					pdu.KV{Key: "CHAP_C", Value: pdu.FormatHex(ls.chapChal)})
				ls.chapPhase = 2
				return answer, false, nil
			}
			if req.Transit {
				return nil, false, c.loginFail(req, pdu.LoginAuthenticationFailure)
			}
			return answer, false, nil
		case ls.chapPhase == 2:
			n, _ := get("CHAP_N")
			r, _ := get("CHAP_R")
			got, err := pdu.ParseBinary(r)
			want := CHAPResponse(ls.chapAlg, ls.chapID, ls.chap.Secret, ls.chapChal)
			if n != ls.chap.User || err != nil || subtle.ConstantTimeCompare(got, want) != 1 {
				return nil, false, c.loginFail(req, pdu.LoginAuthenticationFailure)
			}
			ls.authDone = true
			ls.chapPhase = 3
			if iv, ok := get("CHAP_I"); ok {
				cv, _ := get("CHAP_C")
				id, err1 := strconv.Atoi(iv)
				chal, err2 := pdu.ParseBinary(cv)
				if ls.chap.TargetSecret == "" || err1 != nil || err2 != nil || id < 0 || id > 255 ||
					len(chal) == 0 || len(chal) > 1024 || subtle.ConstantTimeCompare(chal, ls.chapChal) == 1 {
					return nil, false, c.loginFail(req, pdu.LoginAuthenticationFailure)
				}
				answer = append(answer,
					pdu.KV{Key: "CHAP_N", Value: ls.chap.TargetUser},
					pdu.KV{Key: "CHAP_R", Value: pdu.FormatHex(CHAPResponse(ls.chapAlg, byte(id), ls.chap.TargetSecret, chal))})
			}
		case ls.chapPhase == 0 && req.Transit:
			return nil, false, c.loginFail(req, pdu.LoginAuthenticationFailure)
		}
	}
	transit := req.Transit && ls.authDone
	return answer, transit, nil
}

func isDeclarative(k string) bool {
	switch k {
	case "InitiatorName", "InitiatorAlias", "TargetName", "SessionType", "MaxRecvDataSegmentLength":
		return true
	}
	return false
}

// operational answers operational keys and updates ls.neg from everything
// the initiator declared so far (RFC 7143 defaults for the rest).
func (ls *loginState) operational(kvs []pdu.KV) []pdu.KV {
	c := ls.c
	n := c.s.cfg.Negotiation
	var answer []pdu.KV
	num := func(v string, def int) int {
		x, err := pdu.ParseNumber(v)
		if err != nil || x > 1<<24-1 || x < 512 {
			return def
		}
		return int(x)
	}
	pickDigest := func(v string, accept []string) string {
		for _, o := range pdu.SplitList(v) {
			for _, a := range accept {
				if strings.EqualFold(o, a) {
					return a
				}
			}
		}
		return "Reject"
	}
	for _, kv := range kvs {
		if ls.answered[kv.Key] {
			continue
		}
		var v string
		switch kv.Key {
		case "InitiatorName", "InitiatorAlias", "TargetName", "SessionType":
			continue
		case "MaxRecvDataSegmentLength":
			continue
		case "HeaderDigest":
			v = pickDigest(kv.Value, n.HeaderDigests)
		case "DataDigest":
			v = pickDigest(kv.Value, n.DataDigests)
		case "InitialR2T":
			b, _ := pdu.ParseBool(kv.Value)
			v = pdu.FormatBool(b || *n.InitialR2T)
		case "ImmediateData":
			b, _ := pdu.ParseBool(kv.Value)
			v = pdu.FormatBool(b && *n.ImmediateData)
		case "MaxBurstLength":
			v = strconv.Itoa(min(num(kv.Value, 262144), n.MaxBurstLength))
		case "FirstBurstLength":
			v = strconv.Itoa(min(num(kv.Value, 65536), n.FirstBurstLength))
		case "MaxOutstandingR2T":
			x, err := pdu.ParseNumber(kv.Value)
			if err != nil || x == 0 || x > 65535 {
				x = 1
			}
			v = strconv.Itoa(min(int(x), n.MaxOutstandingR2T))
		case "MaxConnections":
			v = "1"
		case "ErrorRecoveryLevel":
			v = "0"
		case "DefaultTime2Wait":
			x, _ := pdu.ParseNumber(kv.Value)
			v = strconv.FormatUint(max(x, 2), 10)
		case "DefaultTime2Retain":
			v = "0"
		case "DataPDUInOrder", "DataSequenceInOrder":
			v = "Yes"
		case "IFMarker", "OFMarker":
			v = "No"
		case "SendTargets", "TargetAddress", "TargetAlias", "TargetPortalGroupTag", "AuthMethod":
			v = pdu.Irrelevant
		default:
			v = pdu.NotUnderstood
		}
		ls.answered[kv.Key] = true
		answer = append(answer, pdu.KV{Key: kv.Key, Value: v})
		ls.keys["<ans>"+kv.Key] = v
	}
	if n.DeclareMaxRecvDataSegmentLength && !ls.answered["<MRDSL>"] && (len(kvs) > 0 || len(answer) > 0) {
		ls.answered["<MRDSL>"] = true
		answer = append(answer, pdu.KV{Key: "MaxRecvDataSegmentLength", Value: strconv.Itoa(n.MaxRecvDataSegmentLength)})
	}
	// Compute the result from the answers (defaults when not negotiated).
	ans := func(k, def string) string {
		if v, ok := ls.keys["<ans>"+k]; ok {
			return v
		}
		return def
	}
	neg := negotiated{
		headerDigest: ans("HeaderDigest", DigestNone) == DigestCRC32C,
		dataDigest:   ans("DataDigest", DigestNone) == DigestCRC32C,
		xmitMRDSL:    8192,
		recvMRDSL:    n.MaxRecvDataSegmentLength,
		firstBurst:   num(ans("FirstBurstLength", "65536"), 65536),
		maxBurst:     num(ans("MaxBurstLength", "262144"), 262144),
		initialR2T:   ans("InitialR2T", "Yes") == "Yes",
		immediate:    ans("ImmediateData", "Yes") == "Yes",
	}
	if !n.DeclareMaxRecvDataSegmentLength {
		// Not declared: the initiator assumes 8192 for what it sends.
		neg.recvMRDSL = max(8192, n.MaxRecvDataSegmentLength)
	}
	if v, ok := ls.keys["MaxRecvDataSegmentLength"]; ok {
		neg.xmitMRDSL = num(v, 8192)
	}
	r2t, _ := strconv.Atoi(ans("MaxOutstandingR2T", "1"))
	neg.maxR2T = max(r2t, 1)
	if neg.firstBurst > neg.maxBurst {
		neg.firstBurst = neg.maxBurst
	}
	ls.neg = neg
	return answer
}
