package login

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/pdu"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	iname = "iqn.2024-01.test:initiator"
	tname = "iqn.2024-01.test.tgt:disk1"
)

func baseConfig() Config {
	return Config{
		InitiatorName: iname,
		TargetName:    tname,
		ISID:          [6]byte{0x80, 0x12, 0x34, 0x56, 0x78, 0x9a},
		ITT:           0x1000,
		InitialCmdSN:  55,
	}
}

func TestLoginPlainTgtdLike(t *testing.T) {
	tt := newTarget(t)
	res, err := Login(context.Background(), tt, baseConfig())
	require.NoError(t, err)
	g := res.Negotiated
	assert.Equal(t, uint16(7), res.TSIH)
	assert.Equal(t, uint32(55), res.CmdSN)
	assert.Equal(t, res.StatSN+1, res.ExpStatSN)
	assert.Equal(t, uint32(8192), g.MaxXmitDataSegmentLength, "tgtd declares no MRDSL: RFC default 8192")
	assert.Equal(t, uint32(262144), g.MaxRecvDataSegmentLength)
	assert.Equal(t, uint32(262144), g.MaxBurstLength)
	assert.Equal(t, uint32(65536), g.FirstBurstLength)
	assert.True(t, g.InitialR2T, "OR with the target's Yes")
	assert.True(t, g.ImmediateData)
	assert.False(t, g.HeaderDigest)
	assert.False(t, g.DataDigest)
	assert.Equal(t, uint32(0), g.DefaultTime2Retain)
	assert.Equal(t, uint32(2), g.DefaultTime2Wait)
	assert.Equal(t, "None", g.AuthMethod)
	assert.Equal(t, "Normal", g.SessionType)

	// Security stage then operational stage, T set, NSG as expected.
	require.Len(t, tt.reqs, 2)
	r0, r1 := tt.reqs[0], tt.reqs[1]
	assert.Equal(t, pdu.SecurityNegotiation, r0.CSG)
	assert.Equal(t, pdu.LoginOperationalNegotiation, r0.NSG)
	assert.True(t, r0.Transit)
	assert.Equal(t, pdu.LoginOperationalNegotiation, r1.CSG)
	assert.Equal(t, pdu.FullFeaturePhase, r1.NSG)
	k0 := tt.sent(0)
	assert.Equal(t, iname, k0["InitiatorName"])
	assert.Equal(t, tname, k0["TargetName"])
	assert.Equal(t, "Normal", k0["SessionType"])
	assert.Equal(t, "None", k0["AuthMethod"])
	k1 := tt.sent(1)
	assert.Equal(t, "None,CRC32C", k1["HeaderDigest"])
	assert.Equal(t, "262144", k1["MaxRecvDataSegmentLength"])
	assert.Equal(t, "No", k1["IFMarker"])
	// Sequence numbers: CmdSN constant, ExpStatSN follows StatSN.
	assert.Equal(t, uint32(0), r0.ExpStatSN)
	assert.Equal(t, uint32(101), r1.ExpStatSN)
	for _, r := range tt.reqs {
		assert.Equal(t, uint32(55), r.CmdSN)
		assert.True(t, r.Immediate)
		assert.Equal(t, uint8(0), r.VersionMax)
		assert.Equal(t, uint32(0x1000), r.ITT)
	}
}

func TestLoginLIOLike(t *testing.T) {
	tt := newTarget(t)
	tt.lioStyle = true
	tt.declareMRDSL = "262144"
	cfg := baseConfig()
	cfg.Params = DefaultParams()
	cfg.Params.InitialR2T = true
	res, err := Login(context.Background(), tt, cfg)
	require.NoError(t, err)
	g := res.Negotiated
	assert.Equal(t, uint32(262144), g.MaxXmitDataSegmentLength)
	assert.True(t, g.InitialR2T, "omitted: our Yes stands")
	assert.True(t, g.DataPDUInOrder, "omitted: our Yes stands")
	assert.True(t, g.DataSequenceInOrder)
	assert.False(t, g.IFMarker)
	assert.Equal(t, "lio-disk", g.TargetAlias)
	assert.True(t, g.HasTargetPortalGroupTag)
	assert.Equal(t, uint16(1), g.TargetPortalGroupTag)
}

func TestLoginOmittedAnswersTakeSafeValues(t *testing.T) {
	tt := newTarget(t)
	for _, k := range []string{"MaxBurstLength", "DefaultTime2Wait", "ImmediateData", "HeaderDigest"} {
		tt.omit[k] = true
	}
	res, err := Login(context.Background(), tt, baseConfig())
	require.NoError(t, err)
	g := res.Negotiated
	assert.Equal(t, uint32(262144), g.MaxBurstLength, "min(offer, RFC default)")
	assert.Equal(t, uint32(2), g.DefaultTime2Wait, "max(offer, RFC default)")
	assert.True(t, g.ImmediateData)
	assert.False(t, g.HeaderDigest)
}

func TestLoginDigests(t *testing.T) {
	tt := newTarget(t)
	tt.digests = []string{"CRC32C"}
	res, err := Login(context.Background(), tt, baseConfig())
	require.NoError(t, err)
	assert.True(t, res.Negotiated.HeaderDigest)
	assert.True(t, res.Negotiated.DataDigest)

	tt = newTarget(t)
	tt.digests = []string{"CRC32C", "None"}
	cfg := baseConfig()
	cfg.Params = DefaultParams()
	cfg.Params.HeaderDigest = []string{"CRC32C", "None"}
	res, err = Login(context.Background(), tt, cfg)
	require.NoError(t, err)
	assert.True(t, res.Negotiated.HeaderDigest, "our first preference")
	assert.False(t, res.Negotiated.DataDigest)

	tt = newTarget(t)
	tt.override["HeaderDigest"] = "MD5"
	_, err = Login(context.Background(), tt, baseConfig())
	require.ErrorIs(t, err, iscsi.ErrLoginProtocol)
	assert.Contains(t, err.Error(), "HeaderDigest")
}

func TestLoginDiscovery(t *testing.T) {
	tt := newTarget(t)
	cfg := baseConfig()
	cfg.TargetName = ""
	res, err := Login(context.Background(), tt, cfg)
	require.NoError(t, err)
	assert.Equal(t, "Discovery", res.Negotiated.SessionType)
	k0 := tt.sent(0)
	assert.Equal(t, "Discovery", k0["SessionType"])
	assert.NotContains(t, k0, "TargetName")
	k1 := tt.sent(1)
	for _, k := range []string{"MaxBurstLength", "FirstBurstLength", "InitialR2T", "ImmediateData", "MaxConnections", "MaxOutstandingR2T", "DataPDUInOrder", "DataSequenceInOrder"} {
		assert.NotContains(t, k1, k, "not allowed in discovery")
	}
	assert.Contains(t, k1, "MaxRecvDataSegmentLength")
	assert.Contains(t, k1, "HeaderDigest")
}

func TestLoginNonLeadingConnection(t *testing.T) {
	tt := newTarget(t)
	cfg := baseConfig()
	cfg.TSIH = 7
	cfg.CID = 1
	res, err := Login(context.Background(), tt, cfg)
	require.NoError(t, err)
	assert.Equal(t, uint16(7), res.TSIH)
	assert.NotContains(t, tt.sent(0), "SessionType")
	assert.NotContains(t, tt.sent(1), "MaxBurstLength")
	assert.Equal(t, uint16(7), tt.reqs[0].TSIH)

	tt = newTarget(t)
	tt.tsih = 9
	_, err = Login(context.Background(), tt, cfg)
	require.ErrorIs(t, err, iscsi.ErrLoginProtocol)
}

func chapConfig(mutual bool) Config {
	cfg := baseConfig()
	cfg.CHAP = &iscsi.CHAP{User: "user1", Secret: "initiator-secret-1"}
	if mutual {
		cfg.CHAP.TargetUser = "tuser"
		cfg.CHAP.TargetSecret = "target-secret-22"
	}
	return cfg
}

func chapTarget(t *testing.T, mutual bool) *testTarget {
	tt := newTarget(t)
	tt.chapUser, tt.chapSecret = "user1", "initiator-secret-1"
	if mutual {
		tt.mutualUser, tt.mutualSecret = "tuser", "target-secret-22"
	}
	return tt
}

func TestLoginCHAPOneWay(t *testing.T) {
	for _, alg := range []iscsi.CHAPAlgorithm{iscsi.CHAPMD5, iscsi.CHAPSHA1, iscsi.CHAPSHA256, iscsi.CHAPSHA3256} {
		t.Run(alg.String(), func(t *testing.T) {
			tt := chapTarget(t, false)
			tt.algs = []iscsi.CHAPAlgorithm{alg}
			cfg := chapConfig(false)
			cfg.CHAP.Algorithms = []iscsi.CHAPAlgorithm{iscsi.CHAPSHA3256, iscsi.CHAPSHA256, iscsi.CHAPSHA1, iscsi.CHAPMD5}
			res, err := Login(context.Background(), tt, cfg)
			require.NoError(t, err)
			assert.Equal(t, "CHAP", res.Negotiated.AuthMethod)
			assert.Equal(t, alg, res.Negotiated.CHAPAlgorithm)
			assert.Equal(t, "CHAP,None", tt.sent(0)["AuthMethod"])
			assert.False(t, tt.reqs[0].Transit, "no T before CHAP is done")
			assert.Equal(t, "8,7,6,5", tt.sent(1)["CHAP_A"])
			k2 := tt.sent(2)
			assert.Equal(t, "user1", k2["CHAP_N"])
			assert.NotContains(t, k2, "CHAP_C", "one-way: no challenge of ours")
			assert.True(t, tt.reqs[2].Transit)
		})
	}
}

func TestLoginCHAPDefaultOrder(t *testing.T) {
	tt := chapTarget(t, false) // tgtd: MD5 only
	res, err := Login(context.Background(), tt, chapConfig(false))
	require.NoError(t, err)
	assert.Equal(t, "5", tt.sent(1)["CHAP_A"], "MD5 alone by default, as open-iscsi and libiscsi")
	assert.Equal(t, iscsi.CHAPMD5, res.Negotiated.CHAPAlgorithm)
}

func TestLoginCHAPTargetWithoutAuth(t *testing.T) {
	// One-way CHAP configured, target needs none: None is accepted.
	tt := newTarget(t)
	res, err := Login(context.Background(), tt, chapConfig(false))
	require.NoError(t, err)
	assert.Equal(t, "None", res.Negotiated.AuthMethod)
	// Mutual CHAP configured: the target must authenticate.
	tt = newTarget(t)
	_, err = Login(context.Background(), tt, chapConfig(true))
	require.Error(t, err)
	assert.Equal(t, "CHAP", tt.sent(0)["AuthMethod"], "no None fallback with mutual CHAP")
}

func TestLoginCHAPWrongSecret(t *testing.T) {
	tt := chapTarget(t, false)
	tt.chapSecret = "some-other-secret"
	_, err := Login(context.Background(), tt, chapConfig(false))
	require.ErrorIs(t, err, iscsi.ErrAuthentication)
	var le *iscsi.LoginError
	require.ErrorAs(t, err, &le)
	assert.Equal(t, uint16(0x0201), le.Status())
	assert.False(t, le.Retryable())
}

func TestLoginCHAPMutual(t *testing.T) {
	tt := chapTarget(t, true)
	res, err := Login(context.Background(), tt, chapConfig(true))
	require.NoError(t, err)
	assert.Equal(t, "CHAP", res.Negotiated.AuthMethod)
	k2 := tt.sent(2)
	c, err := parseBinary(k2["CHAP_C"])
	require.NoError(t, err)
	assert.GreaterOrEqual(t, len(c), 16)
	assert.Contains(t, k2, "CHAP_I")
}

func TestLoginCHAPMutualFailures(t *testing.T) {
	t.Run("wrong target secret", func(t *testing.T) {
		tt := chapTarget(t, true)
		tt.wrongMutual = true
		_, err := Login(context.Background(), tt, chapConfig(true))
		require.ErrorIs(t, err, iscsi.ErrMutualAuth)
	})
	t.Run("target sends no answer", func(t *testing.T) {
		tt := chapTarget(t, true)
		tt.skipMutual = true
		_, err := Login(context.Background(), tt, chapConfig(true))
		require.ErrorIs(t, err, iscsi.ErrMutualAuth)
	})
	t.Run("wrong target name", func(t *testing.T) {
		tt := chapTarget(t, true)
		tt.mutualUser = "impostor"
		_, err := Login(context.Background(), tt, chapConfig(true))
		require.ErrorIs(t, err, iscsi.ErrMutualAuth)
	})
	t.Run("target picks None", func(t *testing.T) {
		tt := chapTarget(t, true)
		tt.override["AuthMethod"] = "None"
		_, err := Login(context.Background(), tt, chapConfig(true))
		require.ErrorIs(t, err, iscsi.ErrMutualAuth)
	})
}

func TestLoginCHAPReflection(t *testing.T) {
	// The target's challenge is exactly what our random source will give
	// for our own challenge (id byte first, then 16 bytes).
	stream := append([]byte{42}, bytes.Repeat([]byte{0xab}, 16)...)
	tt := chapTarget(t, true)
	tt.challenge = stream[1:]
	cfg := chapConfig(true)
	cfg.Rand = bytes.NewReader(stream)
	_, err := Login(context.Background(), tt, cfg)
	require.ErrorIs(t, err, iscsi.ErrCHAPReflection)
	assert.Len(t, tt.reqs, 2, "no CHAP_R sent for a reflected challenge")
}

func TestLoginStatusErrors(t *testing.T) {
	cases := []struct {
		status    uint16
		want      error
		retryable bool
	}{
		{0x0200, iscsi.ErrInitiatorError, false},
		{0x0201, iscsi.ErrAuthentication, false},
		{0x0202, iscsi.ErrAuthorization, false},
		{0x0203, iscsi.ErrTargetNotFound, false},
		{0x0204, iscsi.ErrTargetRemoved, false},
		{0x0205, iscsi.ErrUnsupportedVersion, false},
		{0x0206, iscsi.ErrTooManyConnections, false},
		{0x0207, iscsi.ErrMissingParameter, false},
		{0x0208, iscsi.ErrCantIncludeInSession, false},
		{0x0209, iscsi.ErrSessionTypeNotSupported, false},
		{0x020a, iscsi.ErrSessionDoesNotExist, false},
		{0x020b, iscsi.ErrInvalidDuringLogin, false},
		{0x0299, iscsi.ErrInitiatorError, false},
		{0x0300, iscsi.ErrTargetError, true},
		{0x0301, iscsi.ErrServiceUnavailable, true},
		{0x0302, iscsi.ErrOutOfResources, true},
		{0x0377, iscsi.ErrTargetError, true},
	}
	for _, c := range cases {
		tt := newTarget(t)
		tt.firstStatus = c.status
		_, err := Login(context.Background(), tt, baseConfig())
		require.ErrorIs(t, err, c.want, "status 0x%04x", c.status)
		var le *iscsi.LoginError
		require.ErrorAs(t, err, &le)
		assert.Equal(t, c.status, le.Status())
		assert.Equal(t, c.retryable, le.Retryable(), "status 0x%04x", c.status)
		assert.Equal(t, c.retryable, le.Temporary())
		assert.Contains(t, err.Error(), "security stage")
	}
	// A class the RFC does not define is still a *iscsi.LoginError.
	tt := newTarget(t)
	tt.firstStatus = 0x0705
	_, err := Login(context.Background(), tt, baseConfig())
	var le *iscsi.LoginError
	require.ErrorAs(t, err, &le)
	assert.Equal(t, uint8(7), le.Class)
}

func TestLoginRedirect(t *testing.T) {
	cases := []struct {
		status uint16
		addr   string
		want   iscsi.RedirectError
	}{
		{0x0101, "[fe80::1]:3261,2", iscsi.RedirectError{Address: "fe80::1", Port: 3261, PortalGroupTag: 2, HasPortalGroupTag: true, Detail: 1}},
		{0x0102, "target.example.com", iscsi.RedirectError{Address: "target.example.com", Port: 3260, Permanent: true, Detail: 2}},
		{0x0101, "10.0.0.2:3262", iscsi.RedirectError{Address: "10.0.0.2", Port: 3262, Detail: 1}},
	}
	for _, c := range cases {
		tt := newTarget(t)
		tt.firstStatus = c.status
		tt.statusText = appendText(nil, kv{"TargetAddress", c.addr})
		_, err := Login(context.Background(), tt, baseConfig())
		var re *iscsi.RedirectError
		require.ErrorAs(t, err, &re)
		assert.Equal(t, c.want, *re)
	}
	tt := newTarget(t)
	tt.firstStatus = 0x0101
	_, err := Login(context.Background(), tt, baseConfig())
	require.ErrorIs(t, err, iscsi.ErrLoginProtocol, "redirect without TargetAddress")
	assert.Equal(t, "[fe80::1]:3261", (&iscsi.RedirectError{Address: "fe80::1", Port: 3261}).Portal())
}

func TestLoginTargetContinuedResponse(t *testing.T) {
	tt := newTarget(t)
	tt.chunk = 20 // every response split into C-bit pieces of 20 bytes
	tt.declareMRDSL = "65536"
	tt.lioStyle = true
	res, err := Login(context.Background(), tt, baseConfig())
	require.NoError(t, err)
	assert.Equal(t, uint32(65536), res.Negotiated.MaxXmitDataSegmentLength)
	assert.Equal(t, uint32(262144), res.Negotiated.MaxBurstLength)
	assert.Greater(t, len(tt.reqs), 6, "pull requests were sent")
}

func TestLoginOurContinuedRequest(t *testing.T) {
	tt := newTarget(t)
	cfg := baseConfig()
	cfg.Params = DefaultParams()
	l := &loginRun{t: tt, cfg: &cfg, log: discard(), neg: newNegotiator(cfg.Params, false, true, discard())}
	var kvs []kv
	for i := 0; i < 100; i++ {
		kvs = append(kvs, kv{"X-test" + strings.Repeat("k", 10), strings.Repeat("v", 200)})
	}
	text := appendText(nil, kvs...)
	require.Greater(t, len(text), 2*maxLoginSegment)
	resp, _, err := l.exchange(context.Background(), pdu.LoginOperationalNegotiation, pdu.FullFeaturePhase, true, text)
	require.NoError(t, err)
	require.NotNil(t, resp)
	require.Len(t, tt.reqs, 3)
	assert.True(t, tt.reqs[0].Continue)
	assert.False(t, tt.reqs[0].Transit, "T is 0 while C is 1")
	assert.True(t, tt.reqs[1].Continue)
	assert.False(t, tt.reqs[2].Continue)
	assert.True(t, tt.reqs[2].Transit)
	var all []byte
	for _, r := range tt.reqs {
		assert.LessOrEqual(t, len(r.Data), maxLoginSegment)
		all = append(all, r.Data...)
	}
	assert.Equal(t, text, all)
	assert.Len(t, tt.keysSeen, 100)
}

func TestLoginNeverCompletes(t *testing.T) {
	tt := newTarget(t)
	tt.neverTransit = true
	_, err := Login(context.Background(), tt, baseConfig())
	require.ErrorIs(t, err, iscsi.ErrNoProgress)
	assert.LessOrEqual(t, len(tt.reqs), maxLoginRounds)
}

func TestLoginUnknownAndProposedKeys(t *testing.T) {
	tt := newTarget(t)
	tt.neverTransit = false
	tt.propose = []kv{
		{"X-vendor.example.feature", "on"},
		{"OFMarkInt", "2048~8192"},
		{"TaskReporting", "ResponseFence,RFC3720"},
		{"RDMAExtensions", "Yes"},
	}
	// The target proposes and so cannot transit on that response.
	first := true
	tt.hook = func(req *pdu.LoginRequest, resp *pdu.LoginResponse) {
		if req.CSG == pdu.LoginOperationalNegotiation && first {
			first = false
			resp.Transit = false
			resp.TSIH = 0
		}
	}
	res, err := Login(context.Background(), tt, baseConfig())
	require.NoError(t, err)
	assert.Equal(t, "NotUnderstood", tt.sawReply["X-vendor.example.feature"])
	assert.Equal(t, "Irrelevant", tt.sawReply["OFMarkInt"])
	assert.Equal(t, "RFC3720", tt.sawReply["TaskReporting"])
	assert.Equal(t, "No", tt.sawReply["RDMAExtensions"])
	assert.Equal(t, "RFC3720", res.Negotiated.TaskReporting)
}

func TestLoginDiscoveryIrrelevantProposal(t *testing.T) {
	tt := newTarget(t)
	tt.propose = []kv{{"MaxBurstLength", "65536"}}
	first := true
	tt.hook = func(req *pdu.LoginRequest, resp *pdu.LoginResponse) {
		if req.CSG == pdu.LoginOperationalNegotiation && first {
			first = false
			resp.Transit = false
		}
	}
	cfg := baseConfig()
	cfg.TargetName = ""
	res, err := Login(context.Background(), tt, cfg)
	require.NoError(t, err)
	assert.Equal(t, "Irrelevant", tt.sawReply["MaxBurstLength"])
	assert.Equal(t, uint32(262144), res.Negotiated.MaxBurstLength, "RFC default")
}

func TestLoginProposalOutOfRangeRejected(t *testing.T) {
	tt := newTarget(t)
	tt.propose = []kv{{"TaskReporting", "FastAbort"}}
	first := true
	tt.hook = func(req *pdu.LoginRequest, resp *pdu.LoginResponse) {
		if req.CSG == pdu.LoginOperationalNegotiation && first {
			first = false
			resp.Transit = false
		}
	}
	_, err := Login(context.Background(), tt, baseConfig())
	require.NoError(t, err)
	assert.Equal(t, "Reject", tt.sawReply["TaskReporting"])
}

func TestLoginBadAnswers(t *testing.T) {
	cases := map[string]struct {
		key, value string
	}{
		"min answer above offer":   {"MaxOutstandingR2T", "2"},
		"out of range":             {"MaxBurstLength", "99999999"},
		"not a number":             {"FirstBurstLength", "lots"},
		"max answer below offer":   {"DefaultTime2Wait", "1"},
		"AND with No gives Yes":    {"IFMarker", "Yes"},
		"not a boolean":            {"ImmediateData", "Maybe"},
		"ERL above range":          {"ErrorRecoveryLevel", "3"},
		"initiator-only key":       {"InitiatorName", "iqn.other"},
		"FFP-only key in login":    {"SendTargets", "All"},
		"MRDSL out of range":       {"MaxRecvDataSegmentLength", "100"},
		"TPGT out of range":        {"TargetPortalGroupTag", "70000"},
		"huge alias":               {"TargetAlias", strings.Repeat("a", 300)},
		"security key operational": {"CHAP_A", "5"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			tt := newTarget(t)
			tt.override[c.key] = c.value
			if _, offered := map[string]bool{"InitiatorName": true, "SendTargets": true, "MaxRecvDataSegmentLength": true, "TargetPortalGroupTag": true, "TargetAlias": true, "CHAP_A": true}[c.key]; offered {
				tt.propose = []kv{{c.key, c.value}}
			}
			_, err := Login(context.Background(), tt, baseConfig())
			require.ErrorIs(t, err, iscsi.ErrLoginProtocol)
		})
	}
}

func TestLoginRepeatedKey(t *testing.T) {
	tt := newTarget(t)
	tt.propose = []kv{{"MaxRecvDataSegmentLength", "8192"}, {"MaxRecvDataSegmentLength", "16384"}}
	_, err := Login(context.Background(), tt, baseConfig())
	require.ErrorIs(t, err, iscsi.ErrLoginProtocol)
	assert.Contains(t, err.Error(), "twice")

	// An identical TargetAlias repeat is tolerated.
	tt = newTarget(t)
	tt.lioStyle = true
	tt.propose = []kv{{"TargetAlias", "lio-disk"}}
	_, err = Login(context.Background(), tt, baseConfig())
	require.NoError(t, err)
}

func TestLoginHugeText(t *testing.T) {
	// One value longer than any limit.
	tt := newTarget(t)
	tt.propose = []kv{{"X-big", strings.Repeat("z", maxValueLen+1)}}
	tt.chunk = 4096
	_, err := Login(context.Background(), tt, baseConfig())
	require.ErrorIs(t, err, iscsi.ErrTextTooLarge)

	// Endless continuation beyond the text bound.
	tt = newTarget(t)
	var many []kv
	for i := 0; i < 400; i++ {
		many = append(many, kv{"X-k" + strings.Repeat("x", 40), strings.Repeat("y", 250)})
	}
	tt.propose = many
	tt.chunk = 8192
	_, err = Login(context.Background(), tt, baseConfig())
	require.ErrorIs(t, err, iscsi.ErrTextTooLarge)
}

func TestLoginProtocolViolations(t *testing.T) {
	cases := map[string]func(req *pdu.LoginRequest, resp *pdu.LoginResponse){
		"T and C":       func(_ *pdu.LoginRequest, r *pdu.LoginResponse) { r.Continue = r.Transit },
		"wrong ITT":     func(_ *pdu.LoginRequest, r *pdu.LoginResponse) { r.ITT++ },
		"wrong ISID":    func(_ *pdu.LoginRequest, r *pdu.LoginResponse) { r.ISID[0]++ },
		"wrong CSG":     func(_ *pdu.LoginRequest, r *pdu.LoginResponse) { r.CSG = 2 },
		"NSG backwards": func(q *pdu.LoginRequest, r *pdu.LoginResponse) { r.NSG = q.CSG },
		"NSG skips":     func(q *pdu.LoginRequest, r *pdu.LoginResponse) { r.NSG = pdu.FullFeaturePhase },
		"TSIH 0 at end": func(_ *pdu.LoginRequest, r *pdu.LoginResponse) { r.TSIH = 0 },
		"unasked T":     func(q *pdu.LoginRequest, r *pdu.LoginResponse) { r.Transit = true; r.NSG = q.NSG },
	}
	for name, hook := range cases {
		t.Run(name, func(t *testing.T) {
			tt := newTarget(t)
			if name == "unasked T" {
				tt = chapTarget(t, false)
			}
			tt.hook = hook
			cfg := baseConfig()
			if name == "unasked T" {
				cfg = chapConfig(false)
			}
			_, err := Login(context.Background(), tt, cfg)
			require.ErrorIs(t, err, iscsi.ErrLoginProtocol)
		})
	}
	t.Run("version", func(t *testing.T) {
		tt := newTarget(t)
		tt.hook = func(_ *pdu.LoginRequest, r *pdu.LoginResponse) { r.VersionActive = 1 }
		_, err := Login(context.Background(), tt, baseConfig())
		require.ErrorIs(t, err, iscsi.ErrUnsupportedVersion)
	})
}

// rejectTarget answers every Login Request with a Reject PDU.
type rejectTarget struct{ testTarget }

func (r *rejectTarget) RecvPDU(ctx context.Context) ([]byte, error) {
	return (&pdu.Reject{Reason: pdu.RejectProtocolError, ITT: pdu.ReservedTag}).Encode(nil), nil
}

func TestLoginRejectPDU(t *testing.T) {
	rt := &rejectTarget{*newTarget(t)}
	_, err := Login(context.Background(), rt, baseConfig())
	require.ErrorIs(t, err, iscsi.ErrLoginProtocol)
	assert.Contains(t, err.Error(), "rejected")
}

func TestLoginConfigErrors(t *testing.T) {
	cases := map[string]func(c *Config){
		"no initiator name": func(c *Config) { c.InitiatorName = "" },
		"bad target name":   func(c *Config) { c.TargetName = "has space" },
		"short secret":      func(c *Config) { c.CHAP = &iscsi.CHAP{User: "u", Secret: "short"} },
		"same secrets": func(c *Config) {
			c.CHAP = &iscsi.CHAP{User: "u", Secret: "same-secret-123", TargetSecret: "same-secret-123"}
		},
		"no chap user": func(c *Config) { c.CHAP = &iscsi.CHAP{Secret: "long-enough-secret"} },
		"unknown algorithm": func(c *Config) {
			c.CHAP = &iscsi.CHAP{User: "u", Secret: "long-enough-secret", Algorithms: []iscsi.CHAPAlgorithm{9}}
		},
		"FirstBurst > Max":  func(c *Config) { c.Params = DefaultParams(); c.Params.FirstBurstLength = c.Params.MaxBurstLength + 1 },
		"MRDSL too small":   func(c *Config) { c.Params = DefaultParams(); c.Params.MaxRecvDataSegmentLength = 100 },
		"bad digest":        func(c *Config) { c.Params = DefaultParams(); c.Params.DataDigest = []string{"MD5"} },
		"empty digest list": func(c *Config) { c.Params = DefaultParams(); c.Params.HeaderDigest = nil },
		"ERL too high":      func(c *Config) { c.Params = DefaultParams(); c.Params.ErrorRecoveryLevel = 3 },
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := baseConfig()
			mod(&cfg)
			tt := newTarget(t)
			_, err := Login(context.Background(), tt, cfg)
			require.ErrorIs(t, err, iscsi.ErrConfig)
			assert.Empty(t, tt.reqs, "nothing sent")
		})
	}
	// Short secrets pass with AllowShortSecrets.
	tt := newTarget(t)
	tt.chapUser, tt.chapSecret = "u", "short"
	cfg := baseConfig()
	cfg.CHAP = &iscsi.CHAP{User: "u", Secret: "short", AllowShortSecrets: true}
	_, err := Login(context.Background(), tt, cfg)
	require.NoError(t, err)
}

func TestLoginContextCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Login(ctx, newTarget(t), baseConfig())
	require.True(t, errors.Is(err, context.Canceled), "got %v", err)
}
