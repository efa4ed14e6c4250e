//go:build linux

package iscsinl

import (
	"context"
	"fmt"
	"syscall"
)

// retcodeErr turns a non-zero r.retcode into a *KernelError.
func retcodeErr(m *Message, op MsgType) error {
	if rc := m.Retcode(); rc != 0 {
		return &KernelError{Op: op, Errno: errnoFromKernel(rc), Retcode: true}
	}
	return nil
}

// simple runs a request whose reply only carries success/failure: IF_ERROR
// or a non-zero r.retcode (the kernel echoes r, which we send zeroed, so a
// non-zero value is the kernel's answer).
func (c *Conn) simple(ctx context.Context, r Request) error {
	m, err := c.Do(ctx, r)
	if err != nil {
		return err
	}
	return retcodeErr(m, r.Type())
}

// CreateSession creates a session (a new SCSI host
// /sys/class/scsi_host/host<HostNo> and /sys/class/iscsi_session/session<SID>
// appear) and adopts it.
func (c *Conn) CreateSession(ctx context.Context, r CreateSession) (SessionResult, error) {
	m, err := c.Do(ctx, r)
	if err != nil {
		return SessionResult{}, err
	}
	res := m.SessionResult()
	c.Adopt(res.SID)
	return res, nil
}

// DestroySession destroys a session without connections and releases it.
func (c *Conn) DestroySession(ctx context.Context, sid uint32) error {
	if err := c.simple(ctx, DestroySession{SID: sid}); err != nil {
		return err
	}
	c.Release(sid)
	return nil
}

// UnbindSession removes the session's SCSI target and devices; the kernel
// then emits KEVENT_UNBIND_SESSION.
func (c *Conn) UnbindSession(ctx context.Context, sid uint32) error {
	return c.simple(ctx, UnbindSession{SID: sid})
}

// CreateConn creates connection cid of session sid.
func (c *Conn) CreateConn(ctx context.Context, sid, cid uint32) (ConnResult, error) {
	m, err := c.Do(ctx, CreateConn{SID: sid, CID: cid})
	if err != nil {
		return ConnResult{}, err
	}
	res := m.ConnResult()
	if res.CID == CIDFailed {
		return ConnResult{}, &KernelError{Op: UEventCreateConn, Errno: syscall.ENOMEM, Retcode: true}
	}
	c.mu.Lock()
	if _, ok := c.owned[res.SID]; ok {
		c.queueLocked(res.SID, res.CID)
	}
	c.mu.Unlock()
	return res, nil
}

// DestroyConn destroys a connection and drops its PDU queue.
func (c *Conn) DestroyConn(ctx context.Context, sid, cid uint32) error {
	if err := c.simple(ctx, DestroyConn{SID: sid, CID: cid}); err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.queues, connKey{sid, cid})
	c.mu.Unlock()
	return nil
}

// BindConn hands the connected TCP socket fd (a descriptor of this
// process; keep it open until the connection is stopped) to the kernel.
// Afterwards the kernel owns the socket's I/O; login PDUs go through
// SendPDU/RecvPDU.
func (c *Conn) BindConn(ctx context.Context, sid, cid uint32, fd int, leading bool) error {
	if fd < 0 {
		return fmt.Errorf("iscsinl: BIND_CONN: invalid fd %d", fd)
	}
	return c.simple(ctx, BindConn{SID: sid, CID: cid, TransportEPH: uint64(fd), IsLeading: leading})
}

// SetParam sets a session/connection parameter. The kernel answers
// ENOTCONN for most parameters until the connection is bound, and some
// transports answer ENOSYS for parameters they do not support (iscsid
// ignores ENOSYS). Password values are never logged.
func (c *Conn) SetParam(ctx context.Context, sid, cid uint32, p Param, value string) error {
	return c.simple(ctx, SetParam{SID: sid, CID: cid, Param: p, Value: value})
}

// SetHostParam sets a host parameter (e.g. HostParamInitiatorName).
func (c *Conn) SetHostParam(ctx context.Context, hostNo uint32, p HostParam, value string) error {
	return c.simple(ctx, SetHostParam{HostNo: hostNo, Param: p, Value: value})
}

// StartConn moves the connection to full feature phase. EEXIST means the
// session already exists on the target side.
func (c *Conn) StartConn(ctx context.Context, sid, cid uint32) error {
	return c.simple(ctx, StartConn{SID: sid, CID: cid})
}

// StopConn stops a connection: StopConnTerm before teardown,
// StopConnRecover to keep the session and reconnect.
func (c *Conn) StopConn(ctx context.Context, sid, cid uint32, flag StopFlag) error {
	return c.simple(ctx, StopConn{SID: sid, CID: cid, Flag: flag})
}

// SendPDU sends one PDU through the bound connection: hdr is the BHS (+AHS),
// data the unpadded data segment.
func (c *Conn) SendPDU(ctx context.Context, sid, cid uint32, hdr, data []byte) error {
	return c.simple(ctx, SendPDU{SID: sid, CID: cid, Hdr: hdr, Data: data})
}

// GetStats returns the connection's counters. The kernel multicasts the
// result to the whole group (nlmsg_type 0), matched here by sid/cid.
func (c *Conn) GetStats(ctx context.Context, sid, cid uint32) (*Stats, error) {
	m, err := c.Do(ctx, GetStats{SID: sid, CID: cid})
	if err != nil {
		return nil, err
	}
	return ParseStats(m.Payload)
}
