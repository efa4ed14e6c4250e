package main

import (
	"flag"
	"time"

	"github.com/gosan/iscsi/initiator"
)

// sessionFlags are the userspace session's timeouts and recovery knobs,
// with the library's defaults (the names open-iscsi and libiscsi users
// look for: the SCSI command timeout, node.session.err_timeo.*,
// replacement_timeout, noop_out_*).
type sessionFlags struct {
	registered bool

	timeout, tmfTimeout, loginTimeout, replacementTimeout time.Duration
	nopInterval, nopTimeout, sendTimeout                  time.Duration
}

// userspaceCommands open an initiator session and take sessionFlags.
var userspaceCommands = map[string]bool{
	"discover": true, "luns": true, "read": true, "write": true, "copy": true, "bench": true,
}

func (sf *sessionFlags) register(fs *flag.FlagSet) {
	sf.registered = true
	fs.DurationVar(&sf.timeout, "timeout", initiator.DefaultCommandTimeout,
		"SCSI command timeout: then ABORT TASK, LUN RESET, reconnect, one retry (0: none)")
	fs.DurationVar(&sf.tmfTimeout, "tmf-timeout", initiator.DefaultTMFTimeout, "task management (abort, reset) timeout")
	fs.DurationVar(&sf.loginTimeout, "login-timeout", initiator.DefaultLoginTimeout, "login timeout")
	fs.DurationVar(&sf.replacementTimeout, "replacement-timeout", initiator.DefaultReplacementTimeout,
		"how long to reconnect a lost connection before failing (0: fail at once)")
	fs.DurationVar(&sf.nopInterval, "nop-interval", initiator.DefaultNOPInterval, "keepalive NOP-Out after this much silence (0: off)")
	fs.DurationVar(&sf.nopTimeout, "nop-timeout", initiator.DefaultNOPTimeout, "keepalive answer timeout")
	fs.DurationVar(&sf.sendTimeout, "send-timeout", initiator.DefaultSendTimeout, "a send that does not complete fails the connection (0: none)")
}

// options returns the session options the flags set.
func (sf *sessionFlags) options() []initiator.Option {
	if !sf.registered {
		return nil
	}
	return []initiator.Option{
		initiator.WithCommandTimeout(sf.timeout),
		initiator.WithTMFTimeout(sf.tmfTimeout),
		initiator.WithLoginTimeout(sf.loginTimeout),
		initiator.WithReplacementTimeout(sf.replacementTimeout),
		initiator.WithNOP(sf.nopInterval, sf.nopTimeout),
		initiator.WithSendTimeout(sf.sendTimeout),
	}
}
