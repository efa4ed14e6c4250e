package login

import (
	"fmt"
	"slices"

	"github.com/gosan/iscsi"
)

// Login stages (CSG/NSG values, RFC 7143 §11.12.3).
const (
	stageSecurity    = 0
	stageOperational = 1
	stageFullFeature = 3
)

// Special values (RFC 7143 §6.2).
const (
	valNotUnderstood = "NotUnderstood"
	valIrrelevant    = "Irrelevant"
	valReject        = "Reject"
	valNone          = "None"
	valCRC32C        = "CRC32C"
	valCHAP          = "CHAP"
)

// DefaultMaxRecvDataSegmentLength is the RFC 7143 default for
// MaxRecvDataSegmentLength: the limit on the target's side when it
// declares nothing (tgtd with default settings), and the limit for every
// PDU during login.
const DefaultMaxRecvDataSegmentLength = 8192

// rule is the result function of a key (RFC 7143 §6.2, §13).
type rule uint8

const (
	ruleDeclarative rule = iota // each side declares its own value
	ruleMin                     // numerical, result is the minimum
	ruleMax                     // numerical, result is the maximum
	ruleAnd                     // boolean AND
	ruleOr                      // boolean OR
	ruleList                    // responder picks the first acceptable value of the originator's list
	ruleAuth                    // AuthMethod and CHAP_* (security stage, handled by the CHAP state machine)
	ruleMarkInt                 // IFMarkInt/OFMarkInt: Irrelevant as markers are never enabled
	ruleFFP                     // full feature phase only (SendTargets)
)

// phase says in which login stage a key may appear.
type phase uint8

const (
	phaseAny phase = iota // security or operational stage (e.g. TargetAlias)
	phaseSecurity
	phaseOperational
)

// sender says who may send a key.
type sender uint8

const (
	senderBoth sender = iota
	senderInitiator
	senderTarget
)

type keyDef struct {
	rule     rule
	phase    phase
	sender   sender
	min, max uint64   // numerical range (inclusive)
	def      string   // RFC 7143 default (what holds when the key is not negotiated)
	values   []string // legal values of list keys
	leading  bool     // leading connection only (LO)
	noDisc   bool     // Irrelevant in discovery sessions
	maxLen   int      // longest accepted value (0: 255)
}

const max24 = 1<<24 - 1

// keyTable lists every key of RFC 7143 §12-13 (plus the iSER keys of
// RFC 7145 the engine declines). Keys not in it are answered NotUnderstood.
var keyTable = map[string]keyDef{
	"HeaderDigest":             {rule: ruleList, phase: phaseOperational, def: valNone, values: []string{valCRC32C, valNone}},
	"DataDigest":               {rule: ruleList, phase: phaseOperational, def: valNone, values: []string{valCRC32C, valNone}},
	"MaxConnections":           {rule: ruleMin, phase: phaseOperational, min: 1, max: 65535, def: "1", leading: true, noDisc: true},
	"SendTargets":              {rule: ruleFFP},
	"TargetName":               {rule: ruleDeclarative, sender: senderInitiator, maxLen: 223},
	"InitiatorName":            {rule: ruleDeclarative, sender: senderInitiator, maxLen: 223},
	"TargetAlias":              {rule: ruleDeclarative, sender: senderTarget},
	"InitiatorAlias":           {rule: ruleDeclarative, sender: senderInitiator},
	"TargetAddress":            {rule: ruleDeclarative, sender: senderTarget},
	"TargetPortalGroupTag":     {rule: ruleDeclarative, sender: senderTarget, min: 0, max: 65535},
	"InitialR2T":               {rule: ruleOr, phase: phaseOperational, def: "Yes", leading: true, noDisc: true},
	"ImmediateData":            {rule: ruleAnd, phase: phaseOperational, def: "Yes", leading: true, noDisc: true},
	"MaxRecvDataSegmentLength": {rule: ruleDeclarative, phase: phaseOperational, min: 512, max: max24, def: "8192"},
	"MaxBurstLength":           {rule: ruleMin, phase: phaseOperational, min: 512, max: max24, def: "262144", leading: true, noDisc: true},
	"FirstBurstLength":         {rule: ruleMin, phase: phaseOperational, min: 512, max: max24, def: "65536", leading: true, noDisc: true},
	"DefaultTime2Wait":         {rule: ruleMax, phase: phaseOperational, min: 0, max: 3600, def: "2", leading: true},
	"DefaultTime2Retain":       {rule: ruleMin, phase: phaseOperational, min: 0, max: 3600, def: "20", leading: true},
	"MaxOutstandingR2T":        {rule: ruleMin, phase: phaseOperational, min: 1, max: 65535, def: "1", leading: true, noDisc: true},
	"DataPDUInOrder":           {rule: ruleOr, phase: phaseOperational, def: "Yes", leading: true, noDisc: true},
	"DataSequenceInOrder":      {rule: ruleOr, phase: phaseOperational, def: "Yes", leading: true, noDisc: true},
	"ErrorRecoveryLevel":       {rule: ruleMin, phase: phaseOperational, min: 0, max: 2, def: "0", leading: true},
	"SessionType":              {rule: ruleDeclarative, sender: senderInitiator, def: "Normal", leading: true},
	"AuthMethod":               {rule: ruleAuth, phase: phaseSecurity, def: valNone},
	"CHAP_A":                   {rule: ruleAuth, phase: phaseSecurity},
	"CHAP_I":                   {rule: ruleAuth, phase: phaseSecurity},
	"CHAP_C":                   {rule: ruleAuth, phase: phaseSecurity},
	"CHAP_N":                   {rule: ruleAuth, phase: phaseSecurity},
	"CHAP_R":                   {rule: ruleAuth, phase: phaseSecurity},
	"IFMarker":                 {rule: ruleAnd, phase: phaseOperational, def: "No"},
	"OFMarker":                 {rule: ruleAnd, phase: phaseOperational, def: "No"},
	"IFMarkInt":                {rule: ruleMarkInt, phase: phaseOperational},
	"OFMarkInt":                {rule: ruleMarkInt, phase: phaseOperational},
	"TaskReporting":            {rule: ruleList, phase: phaseOperational, def: "RFC3720", values: []string{"RFC3720", "ResponseFence", "FastAbort"}, leading: true, noDisc: true},
	// iSER (RFC 7145): never enabled on TCP.
	"RDMAExtensions":                 {rule: ruleAnd, phase: phaseOperational, def: "No", leading: true},
	"TargetRecvDataSegmentLength":    {rule: ruleDeclarative, phase: phaseOperational, sender: senderTarget, min: 512, max: max24},
	"InitiatorRecvDataSegmentLength": {rule: ruleDeclarative, phase: phaseOperational, sender: senderInitiator, min: 512, max: max24},
}

// Params are our proposals for the operational stage. Start from
// DefaultParams() and change fields; a zero Params in Config means
// DefaultParams().
type Params struct {
	// HeaderDigest and DataDigest list "CRC32C" and/or "None" in order of
	// preference.
	HeaderDigest, DataDigest []string
	// MaxRecvDataSegmentLength is declared (not negotiated): the largest
	// data segment we accept.
	MaxRecvDataSegmentLength uint32
	MaxBurstLength           uint32
	FirstBurstLength         uint32
	DefaultTime2Wait         uint32
	DefaultTime2Retain       uint32
	MaxOutstandingR2T        uint32
	MaxConnections           uint32
	ErrorRecoveryLevel       uint32
	InitialR2T               bool
	ImmediateData            bool
	DataPDUInOrder           bool
	DataSequenceInOrder      bool
}

// DefaultParams returns the engine's default offer: the values open-iscsi
// proposes (digests None first with CRC32C accepted, 256 KiB receive
// segments, 16 MiB bursts, unsolicited and immediate data wanted, ERL 0,
// one connection, DefaultTime2Retain 0 since ERL 0 never reinstates tasks).
func DefaultParams() Params {
	return Params{
		HeaderDigest:             []string{valNone, valCRC32C},
		DataDigest:               []string{valNone, valCRC32C},
		MaxRecvDataSegmentLength: 262144,
		MaxBurstLength:           16776192,
		FirstBurstLength:         262144,
		DefaultTime2Wait:         2,
		DefaultTime2Retain:       0,
		MaxOutstandingR2T:        1,
		MaxConnections:           1,
		ErrorRecoveryLevel:       0,
		InitialR2T:               false,
		ImmediateData:            true,
		DataPDUInOrder:           true,
		DataSequenceInOrder:      true,
	}
}

func (p *Params) isZero() bool {
	return p.HeaderDigest == nil && p.DataDigest == nil && p.MaxRecvDataSegmentLength == 0 &&
		p.MaxBurstLength == 0 && p.FirstBurstLength == 0 && p.DefaultTime2Wait == 0 &&
		p.DefaultTime2Retain == 0 && p.MaxOutstandingR2T == 0 && p.MaxConnections == 0 &&
		p.ErrorRecoveryLevel == 0 && !p.InitialR2T && !p.ImmediateData && !p.DataPDUInOrder && !p.DataSequenceInOrder
}

// Validate checks every value against the ranges of RFC 7143 §13.
func (p *Params) Validate() error {
	for _, c := range []struct {
		name string
		v    uint32
	}{
		{"MaxRecvDataSegmentLength", p.MaxRecvDataSegmentLength},
		{"MaxBurstLength", p.MaxBurstLength},
		{"FirstBurstLength", p.FirstBurstLength},
		{"DefaultTime2Wait", p.DefaultTime2Wait},
		{"DefaultTime2Retain", p.DefaultTime2Retain},
		{"MaxOutstandingR2T", p.MaxOutstandingR2T},
		{"MaxConnections", p.MaxConnections},
		{"ErrorRecoveryLevel", p.ErrorRecoveryLevel},
	} {
		d := keyTable[c.name]
		if uint64(c.v) < d.min || uint64(c.v) > d.max {
			return fmt.Errorf("%w: %s=%d outside %d..%d", iscsi.ErrConfig, c.name, c.v, d.min, d.max)
		}
	}
	if p.FirstBurstLength > p.MaxBurstLength {
		return fmt.Errorf("%w: FirstBurstLength %d > MaxBurstLength %d", iscsi.ErrConfig, p.FirstBurstLength, p.MaxBurstLength)
	}
	for name, l := range map[string][]string{"HeaderDigest": p.HeaderDigest, "DataDigest": p.DataDigest} {
		if len(l) == 0 {
			return fmt.Errorf("%w: %s list is empty", iscsi.ErrConfig, name)
		}
		for i, v := range l {
			if v != valNone && v != valCRC32C {
				return fmt.Errorf("%w: %s value %q (want CRC32C or None)", iscsi.ErrConfig, name, v)
			}
			if slices.Index(l, v) != i {
				return fmt.Errorf("%w: %s lists %s twice", iscsi.ErrConfig, name, v)
			}
		}
	}
	return nil
}
