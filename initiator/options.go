package initiator

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net"
	"time"

	"github.com/gosan/iscsi"
)

// Dialer opens the TCP connection to a portal. *net.Dialer satisfies it; set
// its LocalAddr or Control to bind the connection to an interface.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// Option configures Dial and Discover. Options are applied in order; a later
// option overrides an earlier one.
type Option func(*config)

// Digest preference for header or data digests.
type Digest int

const (
	// DigestNone offers only None.
	DigestNone Digest = iota
	// DigestPreferCRC32C offers CRC32C,None (the target chooses).
	DigestPreferCRC32C
	// DigestRequireCRC32C offers only CRC32C; login fails if the target refuses.
	DigestRequireCRC32C
)

func (d Digest) offer() []string {
	switch d {
	case DigestPreferCRC32C:
		return []string{"CRC32C", "None"}
	case DigestRequireCRC32C:
		return []string{"CRC32C"}
	default:
		return []string{"None"}
	}
}

// Defaults.
const (
	DefaultMaxRecvDataSegmentLength = 262144
	DefaultFirstBurstLength         = 262144
	DefaultMaxBurstLength           = 1048576
	DefaultQueueDepth               = 64
	DefaultLoginTimeout             = 15 * time.Second
	DefaultLogoutTimeout            = 5 * time.Second
	DefaultTMFTimeout               = 10 * time.Second
	DefaultNOPInterval              = 10 * time.Second
	DefaultNOPTimeout               = 10 * time.Second
	// DefaultSendTimeout bounds a send that makes no progress (a target
	// that stopped reading); see WithSendTimeout.
	DefaultSendTimeout = 30 * time.Second
	// DefaultCommandTimeout is the SCSI command timeout (the Linux disk
	// driver's default); see WithCommandTimeout.
	DefaultCommandTimeout = 30 * time.Second
	// DefaultReplacementTimeout is how long a session tries to replace a
	// failed connection before it fails (open-iscsi's replacement_timeout).
	DefaultReplacementTimeout = 120 * time.Second
	maxRedirects              = 8
)

type config struct {
	initiatorName  string
	initiatorAlias string
	isid           [6]byte
	isidSet        bool
	chap           *iscsi.CHAP
	headerDigest   Digest
	dataDigest     Digest
	mrdsl          uint32
	firstBurst     uint32
	maxBurst       uint32
	immediateData  bool
	initialR2T     bool
	loginTimeout   time.Duration
	logoutTimeout  time.Duration
	tmfTimeout     time.Duration
	nopInterval    time.Duration
	nopTimeout     time.Duration
	sendTimeout    time.Duration
	cmdTimeout     time.Duration
	logger         *slog.Logger
	dialer         Dialer
	queueDepth     int
	readBufSize    int

	replacementTimeout time.Duration
	portals            []string
	stateFunc          StateFunc

	// gatherHook, set by tests only, runs where the flusher lets other
	// goroutines queue behind its PDU (the send queue lock released).
	gatherHook func(*conn)
}

func defaultConfig() config {
	return config{
		mrdsl:         DefaultMaxRecvDataSegmentLength,
		firstBurst:    DefaultFirstBurstLength,
		maxBurst:      DefaultMaxBurstLength,
		immediateData: true,
		initialR2T:    false,
		loginTimeout:  DefaultLoginTimeout,
		logoutTimeout: DefaultLogoutTimeout,
		tmfTimeout:    DefaultTMFTimeout,
		nopInterval:   DefaultNOPInterval,
		nopTimeout:    DefaultNOPTimeout,
		sendTimeout:   DefaultSendTimeout,
		cmdTimeout:    DefaultCommandTimeout,
		queueDepth:    DefaultQueueDepth,
		readBufSize:   256 << 10,

		replacementTimeout: DefaultReplacementTimeout,
	}
}

func buildConfig(opts []Option) config {
	c := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	if c.dialer == nil {
		c.dialer = &net.Dialer{KeepAlive: 30 * time.Second}
	}
	if c.initiatorName == "" {
		c.initiatorName = iscsi.DefaultInitiatorName()
	}
	if !c.isidSet {
		c.isid = RandomISID()
	}
	if c.queueDepth < 1 {
		c.queueDepth = 1
	}
	if c.queueDepth > maxSlots-reservedSlots {
		c.queueDepth = maxSlots - reservedSlots
	}
	c.mrdsl = clamp(c.mrdsl, 512, 16777215)
	c.firstBurst = clamp(c.firstBurst, 512, 16777215)
	c.maxBurst = clamp(c.maxBurst, 512, 16777215)
	if c.firstBurst > c.maxBurst {
		c.firstBurst = c.maxBurst
	}
	return c
}

func clamp(v, lo, hi uint32) uint32 {
	if v < lo {
		return lo
	}
	if v > hi {
		return hi
	}
	return v
}

// WithInitiatorName sets the initiator IQN (default:
// iscsi.DefaultInitiatorName(), the name the kernel binding uses too).
func WithInitiatorName(name string) Option { return func(c *config) { c.initiatorName = name } }

// WithInitiatorAlias sets the InitiatorAlias sent at login.
func WithInitiatorAlias(alias string) Option { return func(c *config) { c.initiatorAlias = alias } }

// WithISID sets the 6-byte initiator session ID (default: RandomISID()).
func WithISID(isid [6]byte) Option {
	return func(c *config) { c.isid = isid; c.isidSet = true }
}

// WithCHAP enables CHAP authentication (mutual when chap.TargetSecret is
// set). Secrets never appear in logs, errors or formatted output.
func WithCHAP(chap iscsi.CHAP) Option {
	return func(c *config) { cp := chap; c.chap = &cp }
}

// WithHeaderDigest sets the header digest preference (default DigestNone).
func WithHeaderDigest(d Digest) Option { return func(c *config) { c.headerDigest = d } }

// WithDataDigest sets the data digest preference (default DigestNone).
func WithDataDigest(d Digest) Option { return func(c *config) { c.dataDigest = d } }

// WithMaxRecvDataSegmentLength sets our MaxRecvDataSegmentLength
// (default 262144; 512..16777215).
func WithMaxRecvDataSegmentLength(n uint32) Option { return func(c *config) { c.mrdsl = n } }

// WithBurstLengths sets the proposed FirstBurstLength and MaxBurstLength.
func WithBurstLengths(first, max uint32) Option {
	return func(c *config) { c.firstBurst = first; c.maxBurst = max }
}

// WithImmediateData sets the ImmediateData proposal (default Yes).
func WithImmediateData(on bool) Option { return func(c *config) { c.immediateData = on } }

// WithInitialR2T sets the InitialR2T proposal (default No; the target may force Yes).
func WithInitialR2T(on bool) Option { return func(c *config) { c.initialR2T = on } }

// WithLoginTimeout bounds connect + login, including redirects and
// out-of-resources retries (default 15 s). The Dial context still applies.
func WithLoginTimeout(d time.Duration) Option { return func(c *config) { c.loginTimeout = d } }

// WithLogoutTimeout bounds the Logout exchange in Close (default 5 s).
func WithLogoutTimeout(d time.Duration) Option { return func(c *config) { c.logoutTimeout = d } }

// WithTMFTimeout bounds task management requests (default 10 s); on expiry
// the connection is declared failed.
func WithTMFTimeout(d time.Duration) Option { return func(c *config) { c.tmfTimeout = d } }

// WithCommandTimeout sets how long a SCSI command may take before the
// session's error handling takes over (default DefaultCommandTimeout; 0:
// no timeout; ContextWithCommandTimeout overrides it for one call). It
// applies to every command, also those of ReadAt and WriteAt, which have
// no context. A command past its timeout is settled by ABORT TASK, else
// LOGICAL UNIT RESET, else dropping the connection (each step bounded by
// WithTMFTimeout) and issued once more; if it times out again the call
// fails with *CommandTimeoutError (errors.Is ErrCommandTimeout). open-iscsi
// users know this as the SCSI device timeout with node.session.err_timeo.*.
func WithCommandTimeout(d time.Duration) Option {
	return func(c *config) { c.cmdTimeout = d }
}

// WithSendTimeout bounds how long one send (a writev of the queued PDUs,
// at most a few MiB) may take before the connection is declared dead and
// recovery starts (default DefaultSendTimeout; 0 disables the bound). A
// target that stops reading the connection would otherwise block the
// writer, and every command waiting to be sent behind it, for as long as
// TCP keeps the connection. The bound is a socket write deadline that is
// moved forward whenever half of it has passed, so a send that has not
// completed fails after between d/2 and d: choose d well above the time a
// few MiB take on the slowest link.
func WithSendTimeout(d time.Duration) Option {
	return func(c *config) { c.sendTimeout = d }
}

// WithNOP sets the keepalive: a NOP-Out is sent after interval of receive
// silence, and the connection is declared dead if no NOP-In answers within
// timeout. interval <= 0 disables keepalives.
func WithNOP(interval, timeout time.Duration) Option {
	return func(c *config) { c.nopInterval = interval; c.nopTimeout = timeout }
}

// WithLogger sets the logger (default: discard). Protocol events log at Debug.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithDialer sets the dialer used for TCP connections (default net.Dialer).
func WithDialer(d Dialer) Option { return func(c *config) { c.dialer = d } }

// WithQueueDepth sets the maximum number of SCSI commands in flight on a
// session (default 64, at most 1024). The target's command window may lower it further.
func WithQueueDepth(n int) Option { return func(c *config) { c.queueDepth = n } }

// WithReplacementTimeout bounds how long a session tries to replace a
// failed connection (default DefaultReplacementTimeout, 120 s). Meanwhile
// commands wait, within their context; when it passes, pending and new
// commands fail with a *SessionFailedError (errors.Is ErrSessionFailed).
// 0 fails the session as soon as its connection fails.
//
// Recovery works at error recovery level 0 with session reinstatement:
// after the target's DefaultTime2Wait the session logs in again with the
// same ISID and TSIH 0, trying the portal it was connected to, the portal
// given to Dial and those of WithPortals in turn, with a back-off of 1 s
// doubling to 30 s between rounds; then it re-issues, in their original
// order, every command that had not completed (a write whose outcome was
// unknown is written again: writes are idempotent at the block level).
func WithReplacementTimeout(d time.Duration) Option {
	return func(c *config) { c.replacementTimeout = max(d, 0) }
}

// WithPortals adds portals ("host:port") to try, after the one Dial was
// given, when the session must reconnect: typically the other portals
// Discover listed for the target (Target.Portals, as Portal.String()).
// DialTarget does this for a Target.
func WithPortals(portals ...string) Option {
	return func(c *config) { c.portals = append(c.portals, portals...) }
}

// WithStateFunc sets a function told about every change of the session's
// state (connected, recovering, failed, closed) with its cause, for
// logging and metrics. See StateFunc for the rules it must follow.
func WithStateFunc(f StateFunc) Option { return func(c *config) { c.stateFunc = f } }

// RandomISID returns an ISID of the "random" qualifier type (T=0b11,
// RFC 7143 section 11.12.5) with 46 random bits.
func RandomISID() [6]byte {
	var b [6]byte
	_, _ = rand.Read(b[:])
	b[0] = 0xC0 | (b[0] & 0x3f) // T=11: random
	return b
}
