package login

import (
	"fmt"
	"log/slog"
	"slices"
	"strconv"

	"github.com/gosan/iscsi"
)

// negotiator applies keyTable to the operational keys of one login: it
// builds our offers, checks the target's answers against them, answers the
// target's own proposals and, at the end, computes Negotiated.
type negotiator struct {
	discovery bool
	leading   bool
	params    Params
	sent      map[string]string // declaratives we sent (InitiatorName, TargetName, ...)
	offers    map[string]string // operational keys we offered, with our value
	result    map[string]string // outcome per key; "" = RFC default (NotUnderstood, Irrelevant, Reject)
	seen      map[string]string // every key the target sent, for repeat detection
	declared  map[string]string // target declaratives (TargetAlias, TargetPortalGroupTag, MaxRecvDataSegmentLength)
	replies   []kv              // answers we owe the target
	log       *slog.Logger
}

func newNegotiator(p Params, discovery, leading bool, log *slog.Logger) *negotiator {
	return &negotiator{
		discovery: discovery,
		leading:   leading,
		params:    p,
		sent:      map[string]string{},
		offers:    map[string]string{},
		result:    map[string]string{},
		seen:      map[string]string{},
		declared:  map[string]string{},
		log:       log,
	}
}

func u32(v uint32) string { return strconv.FormatUint(uint64(v), 10) }

func joinList(l []string) string {
	s := ""
	for i, v := range l {
		if i > 0 {
			s += ","
		}
		s += v
	}
	return s
}

// ourValue is our preference for a negotiable key, used both to offer it
// and to answer the target's proposal of it.
func (n *negotiator) ourValue(k string) (string, bool) {
	p := &n.params
	switch k {
	case "HeaderDigest":
		return joinList(p.HeaderDigest), true
	case "DataDigest":
		return joinList(p.DataDigest), true
	case "MaxConnections":
		return u32(p.MaxConnections), true
	case "InitialR2T":
		return formatBool(p.InitialR2T), true
	case "ImmediateData":
		return formatBool(p.ImmediateData), true
	case "MaxRecvDataSegmentLength":
		return u32(p.MaxRecvDataSegmentLength), true
	case "MaxBurstLength":
		return u32(p.MaxBurstLength), true
	case "FirstBurstLength":
		return u32(p.FirstBurstLength), true
	case "DefaultTime2Wait":
		return u32(p.DefaultTime2Wait), true
	case "DefaultTime2Retain":
		return u32(p.DefaultTime2Retain), true
	case "MaxOutstandingR2T":
		return u32(p.MaxOutstandingR2T), true
	case "DataPDUInOrder":
		return formatBool(p.DataPDUInOrder), true
	case "DataSequenceInOrder":
		return formatBool(p.DataSequenceInOrder), true
	case "ErrorRecoveryLevel":
		return u32(p.ErrorRecoveryLevel), true
	case "IFMarker", "OFMarker", "RDMAExtensions":
		return "No", true
	case "TaskReporting":
		return "RFC3720", true
	}
	return "", false
}

// offerOrder is the order of our operational offers.
var offerOrder = []string{
	"HeaderDigest", "DataDigest", "MaxRecvDataSegmentLength",
	"InitialR2T", "ImmediateData", "MaxBurstLength", "FirstBurstLength",
	"MaxOutstandingR2T", "MaxConnections", "DataPDUInOrder", "DataSequenceInOrder",
	"DefaultTime2Wait", "DefaultTime2Retain", "ErrorRecoveryLevel",
	"IFMarker", "OFMarker",
}

// relevant reports whether k belongs in this session/connection.
func (n *negotiator) relevant(d keyDef) bool {
	if n.discovery && d.noDisc {
		return false
	}
	if !n.leading && d.leading {
		return false
	}
	return true
}

// operationalOffers returns the keys for the first operational request.
func (n *negotiator) operationalOffers() []kv {
	var out []kv
	for _, k := range offerOrder {
		if !n.relevant(keyTable[k]) {
			continue
		}
		v, _ := n.ourValue(k)
		out = append(out, kv{k, v})
		if keyTable[k].rule != ruleDeclarative {
			n.offers[k] = v
		}
	}
	return out
}

// declare records a declarative we send (so an echo can be recognised).
func (n *negotiator) declare(k, v string) kv {
	n.sent[k] = v
	return kv{k, v}
}

// takeReplies returns and clears the answers we owe.
func (n *negotiator) takeReplies() []kv {
	r := n.replies
	n.replies = nil
	return r
}

// checkRepeat rejects a key the target sends twice in one login (RFC 7143
// §6.2.1). An identical repeat of TargetAlias or TargetPortalGroupTag is
// tolerated: some targets send them with every stage's first response.
func (n *negotiator) checkRepeat(k, v string) error {
	prev, ok := n.seen[k]
	if !ok {
		n.seen[k] = v
		return nil
	}
	if prev == v && (k == "TargetAlias" || k == "TargetPortalGroupTag") {
		return nil
	}
	return protoErr("target sent %s twice", k)
}

func (n *negotiator) parseNum(k, v string, d keyDef) (uint64, error) {
	x, err := parseNumber(v)
	if err != nil {
		return 0, err
	}
	if x < d.min || x > d.max {
		return 0, fmt.Errorf("%d outside %d..%d", x, d.min, d.max)
	}
	return x, nil
}

// handle processes one non-auth key the target sent in stage.
func (n *negotiator) handle(stage int, k, v string) error {
	d, known := keyTable[k]
	if !known {
		// RFC 7143 §6.2: unknown keys (including X- and X# extensions)
		// are answered NotUnderstood.
		n.replies = append(n.replies, kv{k, valNotUnderstood})
		n.log.Debug("login: target key not understood", "key", k)
		return nil
	}
	maxLen := d.maxLen
	if maxLen == 0 {
		maxLen = 255
	}
	if len(v) > maxLen {
		return protoErr("%s value of %d bytes (limit %d)", k, len(v), maxLen)
	}
	switch {
	case d.rule == ruleFFP:
		return protoErr("%s is not allowed during login", k)
	case d.phase == phaseOperational && stage != stageOperational:
		return protoErr("operational key %s in the security stage", k)
	case d.phase == phaseSecurity && stage != stageSecurity:
		return protoErr("security key %s in the operational stage", k)
	}

	if d.rule == ruleDeclarative {
		return n.handleDeclarative(k, v, d)
	}
	if d.rule == ruleMarkInt {
		n.replies = append(n.replies, kv{k, valIrrelevant})
		return nil
	}
	if offer, ok := n.offers[k]; ok {
		if _, answered := n.result[k]; !answered {
			return n.handleAnswer(k, v, offer, d)
		}
	}
	return n.handleProposal(k, v, d)
}

func (n *negotiator) handleDeclarative(k, v string, d keyDef) error {
	if d.sender == senderInitiator {
		// An echo of what we declared is harmless; anything else is not.
		if sent, ok := n.sent[k]; ok && sent == v {
			return nil
		}
		return protoErr("target sent %s=%q, a key only the initiator declares", k, truncate(v, 64))
	}
	switch k {
	case "MaxRecvDataSegmentLength", "TargetPortalGroupTag":
		if _, err := n.parseNum(k, v, d); err != nil {
			return protoErr("%s=%q: %v", k, truncate(v, 32), err)
		}
	case "TargetRecvDataSegmentLength":
		return nil // iSER only, ignored on TCP
	case "TargetAddress":
		// Meaningful only with a redirect status, which is handled
		// before the text; accept and ignore it otherwise.
		return nil
	}
	n.declared[k] = v
	return nil
}

// handleAnswer checks the target's answer to our offer.
func (n *negotiator) handleAnswer(k, v, offer string, d keyDef) error {
	switch v {
	case valNotUnderstood, valIrrelevant, valReject:
		n.log.Debug("login: target declined key", "key", k, "answer", v)
		n.result[k] = ""
		return nil
	}
	bad := func(why string) error {
		return protoErr("target answered %s=%q to our offer %q: %s", k, truncate(v, 64), offer, why)
	}
	switch d.rule {
	case ruleList:
		if !slices.Contains(splitList(offer), v) {
			return bad("not one of the offered values")
		}
	case ruleMin, ruleMax:
		x, err := n.parseNum(k, v, d)
		if err != nil {
			return bad(err.Error())
		}
		o, _ := parseNumber(offer)
		if d.rule == ruleMin && x > o {
			return bad("larger than offered (result is the minimum)")
		}
		if d.rule == ruleMax && x < o {
			return bad("smaller than offered (result is the maximum)")
		}
		v = strconv.FormatUint(x, 10)
	case ruleAnd, ruleOr:
		b, ok := parseBoolValue(v)
		if !ok {
			return bad("not Yes or No")
		}
		if d.rule == ruleAnd && offer == "No" && b {
			return bad("Yes, but the result of AND with No is No")
		}
		if d.rule == ruleOr && offer == "Yes" && !b {
			return bad("No, but the result of OR with Yes is Yes")
		}
	}
	n.result[k] = v
	return nil
}

// handleProposal answers a negotiable key the target offers first.
func (n *negotiator) handleProposal(k, v string, d keyDef) error {
	if _, done := n.result[k]; done {
		return protoErr("target renegotiates %s", k)
	}
	if !n.relevant(d) {
		n.replies = append(n.replies, kv{k, valIrrelevant})
		n.result[k] = ""
		return nil
	}
	switch v {
	case valNotUnderstood, valIrrelevant, valReject:
		return protoErr("target proposes %s=%s", k, v)
	}
	ours, _ := n.ourValue(k)
	reject := func() error {
		n.log.Debug("login: rejecting target proposal", "key", k)
		n.replies = append(n.replies, kv{k, valReject})
		n.result[k] = ""
		return nil
	}
	var answer string
	switch d.rule {
	case ruleList:
		theirs := splitList(v)
		for _, want := range splitList(ours) {
			if slices.Contains(theirs, want) {
				answer = want
				break
			}
		}
		if answer == "" {
			return reject()
		}
	case ruleMin, ruleMax:
		x, err := n.parseNum(k, v, d)
		if err != nil {
			return reject()
		}
		o, _ := parseNumber(ours)
		if d.rule == ruleMin {
			answer = strconv.FormatUint(min(x, o), 10)
		} else {
			answer = strconv.FormatUint(max(x, o), 10)
		}
	case ruleAnd, ruleOr:
		b, ok := parseBoolValue(v)
		if !ok {
			return reject()
		}
		o, _ := parseBoolValue(ours)
		if d.rule == ruleAnd {
			answer = formatBool(b && o)
		} else {
			answer = formatBool(b || o)
		}
	default:
		return protoErr("unexpected %s from target", k)
	}
	n.replies = append(n.replies, kv{k, answer})
	n.result[k] = answer
	return nil
}

// value returns the outcome for k: the negotiated value, or, for keys not
// negotiated, what the RFC result function gives for our offer and the
// RFC default (which is also what an answer-less offer fixes, §6.2.1).
func (n *negotiator) value(k string) string {
	d := keyTable[k]
	if v := n.result[k]; v != "" {
		return v
	}
	offer, offered := n.offers[k]
	_, answered := n.result[k]
	if !offered || answered { // never offered, or declined: the default holds
		return d.def
	}
	// Offered but left unanswered.
	switch d.rule {
	case ruleOr:
		if offer == "Yes" {
			return "Yes" // RFC 7143 §6.2.1: the answer is optional
		}
		return d.def
	case ruleAnd:
		if offer == "No" {
			return "No" // ditto
		}
		return d.def
	case ruleMin:
		o, _ := parseNumber(offer)
		df, _ := parseNumber(d.def)
		n.log.Debug("login: target did not answer; taking min(offer, default)", "key", k)
		return strconv.FormatUint(min(o, df), 10)
	case ruleMax:
		o, _ := parseNumber(offer)
		df, _ := parseNumber(d.def)
		n.log.Debug("login: target did not answer; taking max(offer, default)", "key", k)
		return strconv.FormatUint(max(o, df), 10)
	}
	return d.def
}

func (n *negotiator) num(k string) uint32 {
	x, _ := parseNumber(n.value(k))
	return uint32(x)
}

func (n *negotiator) boolean(k string) bool { return n.value(k) == "Yes" }

// finish computes the negotiated values.
func (n *negotiator) finish() iscsi.Negotiated {
	g := iscsi.Negotiated{
		SessionType:              "Normal",
		HeaderDigest:             n.value("HeaderDigest") == valCRC32C,
		DataDigest:               n.value("DataDigest") == valCRC32C,
		MaxRecvDataSegmentLength: n.params.MaxRecvDataSegmentLength,
		MaxXmitDataSegmentLength: DefaultMaxRecvDataSegmentLength,
		MaxBurstLength:           n.num("MaxBurstLength"),
		FirstBurstLength:         n.num("FirstBurstLength"),
		DefaultTime2Wait:         n.num("DefaultTime2Wait"),
		DefaultTime2Retain:       n.num("DefaultTime2Retain"),
		MaxOutstandingR2T:        n.num("MaxOutstandingR2T"),
		MaxConnections:           n.num("MaxConnections"),
		ErrorRecoveryLevel:       n.num("ErrorRecoveryLevel"),
		InitialR2T:               n.boolean("InitialR2T"),
		ImmediateData:            n.boolean("ImmediateData"),
		DataPDUInOrder:           n.boolean("DataPDUInOrder"),
		DataSequenceInOrder:      n.boolean("DataSequenceInOrder"),
		IFMarker:                 n.boolean("IFMarker"),
		OFMarker:                 n.boolean("OFMarker"),
		TaskReporting:            n.value("TaskReporting"),
		TargetAlias:              n.declared["TargetAlias"],
	}
	if n.discovery {
		g.SessionType = "Discovery"
	}
	if v, ok := n.declared["MaxRecvDataSegmentLength"]; ok {
		x, _ := parseNumber(v)
		g.MaxXmitDataSegmentLength = uint32(x)
	}
	if v, ok := n.declared["TargetPortalGroupTag"]; ok {
		x, _ := parseNumber(v)
		g.TargetPortalGroupTag, g.HasTargetPortalGroupTag = uint16(x), true
	}
	if g.FirstBurstLength > g.MaxBurstLength {
		// Only a broken target gets here (both sides keep FirstBurst <=
		// MaxBurst); clamp rather than send more than MaxBurstLength.
		n.log.Debug("login: clamping FirstBurstLength to MaxBurstLength", "first", g.FirstBurstLength, "max", g.MaxBurstLength)
		g.FirstBurstLength = g.MaxBurstLength
	}
	return g
}
