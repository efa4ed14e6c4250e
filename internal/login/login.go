package login

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/pdu"
)

// Bounds on what a target can make the engine do.
const (
	// maxLoginSegment is the largest data segment of a login PDU in either
	// direction (RFC 7143 §6.1: login runs with the default
	// MaxRecvDataSegmentLength, 8192).
	maxLoginSegment = DefaultMaxRecvDataSegmentLength
	// maxLoginText bounds the text accumulated from one continued (C bit)
	// Login Response sequence.
	maxLoginText = 64 << 10
	// maxLoginPDUs bounds the number of Login Request PDUs in one login.
	maxLoginPDUs = 64
	// maxLoginRounds bounds negotiation rounds (one request, the whole
	// answer) in one login.
	maxLoginRounds = 16
	// maxNameLen is the longest iSCSI name (RFC 7143 §4.2.7.1).
	maxNameLen = 223
)

// Config describes one login (one connection).
type Config struct {
	InitiatorName  string
	InitiatorAlias string // optional
	// TargetName empty means a discovery session (SessionType=Discovery).
	TargetName string
	ISID       [6]byte
	// TSIH is 0 for a new session (leading connection) or the session's
	// TSIH for an additional connection or a reinstatement.
	TSIH uint16
	CID  uint16
	ITT  uint32 // Initiator Task Tag of the login PDUs
	// InitialCmdSN is the CmdSN of every Login Request (login is
	// immediate, so it is also the first CmdSN of the session).
	InitialCmdSN uint32
	// ExpStatSN for the first Login Request (0 on a new connection).
	ExpStatSN uint32
	CHAP      *iscsi.CHAP // nil: AuthMethod=None
	Params    Params      // our proposals; zero value = DefaultParams()
	Logger    *slog.Logger
	// Rand is the source of CHAP challenges; nil is crypto/rand. (Tests
	// use a fixed reader.)
	Rand io.Reader
}

// LogValue shows the configuration without secrets.
func (c Config) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("initiator", c.InitiatorName),
		slog.String("target", c.TargetName),
		slog.String("isid", fmt.Sprintf("%x", c.ISID)),
		slog.Int("tsih", int(c.TSIH)),
		slog.Int("cid", int(c.CID)),
	}
	if c.CHAP != nil {
		attrs = append(attrs, slog.Any("chap", c.CHAP.LogValue()))
	}
	return slog.GroupValue(attrs...)
}

// Result is the outcome of a successful login.
type Result struct {
	Negotiated iscsi.Negotiated
	// TSIH assigned by the target (equal to Config.TSIH when that was set).
	TSIH uint16
	// StatSN of the last Login Response; the next ExpStatSN is StatSN+1.
	StatSN    uint32
	ExpStatSN uint32
	ExpCmdSN  uint32
	MaxCmdSN  uint32
	// CmdSN is the CmdSN of the first full-feature command (unchanged by
	// login: Login Requests are immediate).
	CmdSN uint32
}

func (c *Config) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{iscsi.ErrConfig}, args...)...)
	}
	if c.InitiatorName == "" {
		return bad("InitiatorName is empty")
	}
	for name, v := range map[string]string{"InitiatorName": c.InitiatorName, "TargetName": c.TargetName} {
		if len(v) > maxNameLen || strings.ContainsAny(v, "\x00,= ") {
			return bad("%s %q is not a valid iSCSI name", name, truncate(v, 64))
		}
	}
	if len(c.InitiatorAlias) > 255 || strings.ContainsRune(c.InitiatorAlias, 0) {
		return bad("InitiatorAlias too long or contains NUL")
	}
	if err := c.Params.Validate(); err != nil {
		return err
	}
	if c.CHAP != nil {
		if err := c.CHAP.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// Login runs the login phase of one connection over t: the security stage
// (AuthMethod, CHAP), the operational stage, and the transition to the
// full feature phase.
//
// Failures: *iscsi.LoginError (status class 2/3; errors.Is with iscsi.ErrAuthentication
// etc.), *iscsi.RedirectError (class 1), iscsi.ErrCHAPReflection, iscsi.ErrMutualAuth,
// iscsi.ErrNoProgress, iscsi.ErrTextTooLarge, errors wrapping iscsi.ErrLoginProtocol for a target
// that breaks RFC 7143, iscsi.ErrConfig, and transport or context errors.
func Login(ctx context.Context, t Transport, cfg Config) (*Result, error) {
	if cfg.Params.isZero() {
		cfg.Params = DefaultParams()
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rnd := cfg.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	l := &loginRun{
		t:         t,
		cfg:       &cfg,
		log:       log,
		discovery: cfg.TargetName == "",
		leading:   cfg.TSIH == 0,
		expStatSN: cfg.ExpStatSN,
	}
	l.neg = newNegotiator(cfg.Params, l.discovery, l.leading, log)
	if cfg.CHAP != nil {
		l.chap = newCHAPState(cfg.CHAP, rnd)
	}
	return l.run(ctx)
}

type loginRun struct {
	t         Transport
	cfg       *Config
	log       *slog.Logger
	discovery bool
	leading   bool
	neg       *negotiator
	chap      *chapState

	authOffer  []string // AuthMethod values offered
	authMethod string   // chosen by the target
	chapASent  bool

	pdus      int
	expStatSN uint32
}

func (l *loginRun) run(ctx context.Context) (*Result, error) {
	stage := pdu.SecurityNegotiation
	// First request: the declaratives and the AuthMethod offer.
	send := []kv{l.neg.declare("InitiatorName", l.cfg.InitiatorName)}
	if l.cfg.InitiatorAlias != "" {
		send = append(send, l.neg.declare("InitiatorAlias", l.cfg.InitiatorAlias))
	}
	if l.leading {
		st := "Normal"
		if l.discovery {
			st = "Discovery"
		}
		send = append(send, l.neg.declare("SessionType", st))
	}
	if !l.discovery {
		send = append(send, l.neg.declare("TargetName", l.cfg.TargetName))
	}
	switch {
	case l.chap == nil:
		l.authOffer = []string{valNone}
	case l.cfg.CHAP.Mutual():
		// No None fallback: the target must prove itself.
		l.authOffer = []string{valCHAP}
	default:
		l.authOffer = []string{valCHAP, valNone}
	}
	send = append(send, kv{"AuthMethod", joinList(l.authOffer)})
	transit := l.chap == nil

	for round := 0; ; round++ {
		if round >= maxLoginRounds {
			return nil, fmt.Errorf("%w: no full feature phase after %d rounds", iscsi.ErrNoProgress, round)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		nsg := pdu.FullFeaturePhase
		if stage == pdu.SecurityNegotiation {
			nsg = pdu.LoginOperationalNegotiation
		}
		resp, text, err := l.exchange(ctx, stage, nsg, transit, appendText(nil, send...))
		if err != nil {
			return nil, err
		}
		send = nil
		kvs, err := parseText(text, maxValueLen)
		if err != nil {
			return nil, err
		}
		l.logKeys("login: received", resp.CSG, resp.NSG, resp.Transit, kvs)
		if resp.Transit && !transit {
			return nil, protoErr("target set T without our T (stage %v)", stage)
		}
		for _, p := range kvs {
			if err := l.neg.checkRepeat(p.Key, p.Value); err != nil {
				return nil, err
			}
			if d, ok := keyTable[p.Key]; ok && d.rule == ruleAuth {
				if stage != pdu.SecurityNegotiation {
					return nil, protoErr("%s in the operational stage", p.Key)
				}
				if err := l.authKey(p.Key, p.Value); err != nil {
					return nil, err
				}
				continue
			}
			if err := l.neg.handle(int(stage), p.Key, p.Value); err != nil {
				return nil, err
			}
		}

		if stage == pdu.SecurityNegotiation {
			more, ready, err := l.authStep(resp.Transit)
			if err != nil {
				return nil, err
			}
			send = append(send, more...)
			transit = ready
		} else {
			transit = true // nothing of ours is outstanding in the operational stage
		}
		replies := l.neg.takeReplies()

		if !resp.Transit {
			send = append(send, replies...)
			continue
		}
		// The target moves on.
		if resp.NSG <= stage || resp.NSG > nsg || resp.NSG == 2 {
			return nil, protoErr("target moves from %v to %v; we asked for %v", stage, resp.NSG, nsg)
		}
		for _, r := range replies {
			if _, known := keyTable[r.Key]; known && r.Value != valIrrelevant {
				return nil, protoErr("target left stage %v with %s=%s unanswered", stage, r.Key, r.Value)
			}
			l.log.Debug("login: dropping answer to an unknown key at stage change", "key", r.Key)
		}
		if resp.NSG == pdu.FullFeaturePhase {
			return l.finish(resp)
		}
		stage = resp.NSG
		send = l.neg.operationalOffers()
		transit = true
	}
}

// authKey handles AuthMethod and CHAP_* from the target.
func (l *loginRun) authKey(k, v string) error {
	if k == "AuthMethod" {
		switch {
		case containsStr(l.authOffer, v):
			l.authMethod = v
			if v == valNone && l.chap != nil && l.cfg.CHAP.Mutual() {
				return iscsi.ErrMutualAuth
			}
			return nil
		case l.chap != nil && l.cfg.CHAP.Mutual():
			return fmt.Errorf("%w: target answered AuthMethod=%q to our offer CHAP", iscsi.ErrMutualAuth, truncate(v, 32))
		case v == valReject || v == valNotUnderstood || v == valIrrelevant:
			return fmt.Errorf("%w: target answered AuthMethod=%s to our offer %s", iscsi.ErrAuthentication, v, joinList(l.authOffer))
		}
		return protoErr("target chose AuthMethod=%q; we offered %s", truncate(v, 32), joinList(l.authOffer))
	}
	if l.authMethod != valCHAP || l.chap == nil {
		return protoErr("%s without AuthMethod=CHAP", k)
	}
	if k == "CHAP_A" && !l.chapASent {
		return protoErr("CHAP_A before we offered algorithms")
	}
	return l.chap.handle(k, v)
}

// authStep decides what the security stage sends next and whether we are
// ready to leave it. targetTransit says the target just left the stage.
func (l *loginRun) authStep(targetTransit bool) (send []kv, ready bool, err error) {
	if l.chap != nil && l.authMethod == valCHAP {
		switch {
		case !l.chapASent:
			if targetTransit {
				return nil, false, protoErr("target left the security stage before CHAP")
			}
			l.chapASent = true
			return []kv{{"CHAP_A", l.chap.offerAlgorithms()}}, false, nil
		case l.chap.readyToRespond():
			if targetTransit {
				return nil, false, protoErr("target left the security stage before our CHAP response")
			}
			r, err := l.chap.response()
			return r, true, err
		case l.chap.responseSent:
			if l.chap.cfg.Mutual() && (targetTransit || (l.chap.targetName != nil && l.chap.targetResp != nil)) {
				if err := l.chap.verify(); err != nil {
					return nil, false, err
				}
			}
			return nil, true, nil
		}
		if targetTransit {
			return nil, false, protoErr("target left the security stage during CHAP")
		}
		return nil, false, nil // still waiting for CHAP_A/CHAP_I/CHAP_C
	}
	// No CHAP (or None chosen).
	if targetTransit && l.authMethod == "" && !containsStr(l.authOffer, valNone) {
		return nil, false, fmt.Errorf("%w: target skipped authentication", iscsi.ErrMutualAuth)
	}
	if l.authMethod == "" && l.chap != nil {
		return nil, false, nil // AuthMethod answer not seen yet
	}
	return nil, true, nil
}

func containsStr(l []string, v string) bool {
	for _, x := range l {
		if x == v {
			return true
		}
	}
	return false
}

func (l *loginRun) finish(resp *pdu.LoginResponse) (*Result, error) {
	if l.chap != nil && l.authMethod == valCHAP {
		if !l.chap.responseSent {
			return nil, protoErr("full feature phase without CHAP")
		}
		if err := l.chap.verify(); err != nil {
			return nil, err
		}
	}
	if l.leading && resp.TSIH == 0 {
		return nil, protoErr("final Login Response has TSIH 0")
	}
	if !l.leading && resp.TSIH != l.cfg.TSIH {
		return nil, protoErr("final Login Response has TSIH %d, want %d", resp.TSIH, l.cfg.TSIH)
	}
	g := l.neg.finish()
	g.AuthMethod = valNone
	if l.authMethod == valCHAP {
		g.AuthMethod = valCHAP
		g.CHAPAlgorithm = l.chap.alg
	}
	res := &Result{
		Negotiated: g,
		TSIH:       resp.TSIH,
		StatSN:     resp.StatSN,
		ExpStatSN:  resp.StatSN + 1,
		ExpCmdSN:   resp.ExpCmdSN,
		MaxCmdSN:   resp.MaxCmdSN,
		CmdSN:      l.cfg.InitialCmdSN,
	}
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug("login: full feature phase", "tsih", res.TSIH, "negotiated", fmt.Sprintf("%+v", g))
	}
	return res, nil
}

// exchange sends text (split into C-bit PDUs of at most maxLoginSegment
// bytes) and returns the final response with the whole, possibly
// continued, answer text.
func (l *loginRun) exchange(ctx context.Context, csg, nsg pdu.Stage, transit bool, text []byte) (*pdu.LoginResponse, []byte, error) {
	chunks := splitText(text, maxLoginSegment)
	var resp *pdu.LoginResponse
	for i, c := range chunks {
		last := i == len(chunks)-1
		var err error
		resp, err = l.roundTrip(ctx, csg, nsg, transit && last, !last, c)
		if err != nil {
			return nil, nil, err
		}
		if !last && (resp.Transit || resp.Continue || len(resp.Data) != 0) {
			return nil, nil, protoErr("target answered a continued Login Request with T, C or text")
		}
	}
	acc := append([]byte(nil), resp.Data...)
	for resp.Continue {
		if resp.Transit {
			return nil, nil, protoErr("Login Response with both T and C")
		}
		var err error
		// Pull the rest of the target's text with empty requests.
		resp, err = l.roundTrip(ctx, csg, nsg, false, false, nil)
		if err != nil {
			return nil, nil, err
		}
		if len(acc)+len(resp.Data) > maxLoginText {
			return nil, nil, fmt.Errorf("%w: more than %d bytes of login text", iscsi.ErrTextTooLarge, maxLoginText)
		}
		acc = append(acc, resp.Data...)
	}
	return resp, acc, nil
}

// splitText cuts text into pieces of at most n bytes, preferring cuts
// right after a NUL. It always returns at least one (maybe empty) piece.
func splitText(text []byte, n int) [][]byte {
	var out [][]byte
	for len(text) > n {
		cut := n
		for i := n - 1; i > 0; i-- {
			if text[i] == 0 {
				cut = i + 1
				break
			}
		}
		out = append(out, text[:cut])
		text = text[cut:]
	}
	return append(out, text)
}

// roundTrip sends one Login Request and returns the matching response.
func (l *loginRun) roundTrip(ctx context.Context, csg, nsg pdu.Stage, transit, cont bool, data []byte) (*pdu.LoginResponse, error) {
	l.pdus++
	if l.pdus > maxLoginPDUs {
		return nil, fmt.Errorf("%w: more than %d Login Requests", iscsi.ErrNoProgress, maxLoginPDUs)
	}
	req := &pdu.LoginRequest{
		Immediate:  true, // RFC 7143 §11.12: always; tgtd rejects a login without it
		Transit:    transit,
		Continue:   cont,
		CSG:        csg,
		NSG:        nsg,
		VersionMax: 0,
		VersionMin: 0,
		ISID:       l.cfg.ISID,
		TSIH:       l.cfg.TSIH,
		ITT:        l.cfg.ITT,
		CID:        l.cfg.CID,
		CmdSN:      l.cfg.InitialCmdSN,
		ExpStatSN:  l.expStatSN,
		Data:       data,
	}
	if l.log.Enabled(ctx, slog.LevelDebug) {
		kvs, _ := parseText(data, len(data))
		l.logKeys("login: send", csg, nsg, transit, kvs)
	}
	if err := l.t.SendPDU(ctx, req); err != nil {
		return nil, fmt.Errorf("login: send: %w", err)
	}
	raw, err := l.t.RecvPDU(ctx)
	if err != nil {
		return nil, fmt.Errorf("login: receive: %w", err)
	}
	m, err := pdu.Decode(raw)
	if err != nil {
		return nil, protoErr("undecodable PDU: %v", err)
	}
	var resp *pdu.LoginResponse
	switch m := m.(type) {
	case *pdu.LoginResponse:
		resp = m
	case *pdu.Reject:
		return nil, protoErr("target rejected the Login Request (%v)", m.Reason)
	default:
		return nil, protoErr("%v during login", m.Opcode())
	}
	if resp.ITT != l.cfg.ITT {
		return nil, protoErr("Login Response ITT 0x%x, want 0x%x", resp.ITT, l.cfg.ITT)
	}
	// The status comes first: a failing response may carry any stage.
	if resp.StatusClass != pdu.StatusClassSuccess {
		return nil, l.statusError(resp, csg)
	}
	if resp.ISID != l.cfg.ISID {
		return nil, protoErr("Login Response ISID %x, want %x", resp.ISID, l.cfg.ISID)
	}
	if resp.VersionActive != 0 {
		return nil, fmt.Errorf("%w: target chose version 0x%02x", iscsi.ErrUnsupportedVersion, resp.VersionActive)
	}
	if resp.CSG != csg {
		return nil, protoErr("Login Response CSG %v, request was %v", resp.CSG, csg)
	}
	if resp.Transit && resp.Continue {
		return nil, protoErr("Login Response with both T and C")
	}
	if len(resp.Data) > maxLoginSegment {
		return nil, fmt.Errorf("%w: Login Response data segment of %d bytes", iscsi.ErrTextTooLarge, len(resp.Data))
	}
	// ExpStatSN follows the target's StatSN from the first response on.
	l.expStatSN = resp.StatSN + 1
	return resp, nil
}

func (l *loginRun) statusError(resp *pdu.LoginResponse, csg pdu.Stage) error {
	if resp.StatusClass == pdu.StatusClassRedirection {
		kvs, err := parseText(resp.Data, maxValueLen)
		if err != nil {
			return protoErr("redirect (status 0x%02x%02x) with bad text: %v", resp.StatusClass, resp.StatusDetail, err)
		}
		for _, p := range kvs {
			if p.Key != "TargetAddress" {
				continue
			}
			host, port, tag, hasTag, err := ParseTargetAddress(p.Value)
			if err != nil {
				return err
			}
			return &iscsi.RedirectError{
				Address: host, Port: port, PortalGroupTag: tag, HasPortalGroupTag: hasTag,
				Permanent: resp.StatusDetail == 0x02, Detail: resp.StatusDetail,
			}
		}
		return protoErr("redirect (status 0x01%02x) without TargetAddress", resp.StatusDetail)
	}
	return &iscsi.LoginError{Class: resp.StatusClass, Detail: resp.StatusDetail, Stage: int(csg)}
}

// logKeys logs the keys at debug level, hiding CHAP values that are
// secret-derived or useful to an attacker.
func (l *loginRun) logKeys(msg string, csg, nsg pdu.Stage, transit bool, kvs []kv) {
	if !l.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	var b strings.Builder
	for i, p := range kvs {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(p.Key)
		b.WriteByte('=')
		switch p.Key {
		case "CHAP_R", "CHAP_C":
			b.WriteString("<redacted>")
		default:
			b.WriteString(truncate(p.Value, 256))
		}
	}
	l.log.Debug(msg, "csg", int(csg), "nsg", int(nsg), "transit", transit, "keys", b.String())
}
