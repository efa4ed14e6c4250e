//go:build linux

package iscsinl

import (
	"context"
	"fmt"

	"github.com/gosan/iscsi/pdu"
)

// PDUTransport carries login (and text/logout) PDUs of one kernel
// connection over SEND_PDU / RECV_PDU. It implements the login engine's
// Transport interface (internal/login).
type PDUTransport struct {
	c        *Conn
	SID, CID uint32
}

// PDUTransport returns the transport for connection (sid, cid). The session
// must be owned by c (CreateSession or Adopt) for RecvPDU to work.
func (c *Conn) PDUTransport(sid, cid uint32) *PDUTransport {
	return &PDUTransport{c: c, SID: sid, CID: cid}
}

// SendPDU encodes m and sends it with ISCSI_UEVENT_SEND_PDU (the kernel adds
// digests and padding).
func (t *PDUTransport) SendPDU(ctx context.Context, m pdu.Message) error {
	hdr, data, err := splitPDU(m.Encode(nil))
	if err != nil {
		return err
	}
	return t.c.SendPDU(ctx, t.SID, t.CID, hdr, data)
}

// SendRaw sends an already encoded PDU (BHS + AHS + data, padding optional).
func (t *PDUTransport) SendRaw(ctx context.Context, b []byte) error {
	hdr, data, err := splitPDU(b)
	if err != nil {
		return err
	}
	return t.c.SendPDU(ctx, t.SID, t.CID, hdr, data)
}

// RecvPDU returns the next PDU the kernel passes up for this connection.
func (t *PDUTransport) RecvPDU(ctx context.Context) ([]byte, error) {
	return t.c.RecvPDU(ctx, t.SID, t.CID)
}

// splitPDU splits an encoded PDU into header (BHS+AHS) and the unpadded
// data segment, as SEND_PDU wants them (hdr_size, data_size).
func splitPDU(b []byte) (hdr, data []byte, err error) {
	if len(b) < BHSLen {
		return nil, nil, fmt.Errorf("iscsinl: encoded PDU is %d bytes, shorter than a BHS", len(b))
	}
	hl := BHSLen + int(b[4])*4
	n := PDULen(b)
	if n > len(b) {
		return nil, nil, fmt.Errorf("iscsinl: encoded PDU is %d bytes, its header announces %d", len(b), n)
	}
	return b[:hl], b[hl:n], nil
}
