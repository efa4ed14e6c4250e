package blockdev

import (
	"context"
	"fmt"
)

// ConnStats returns the kernel's counters of the connection of session
// sid (connection 0, the only one this package makes).
func (k *Kernel) ConnStats(ctx context.Context, sid uint32) (*ConnStats, error) {
	s, err := k.nl.GetStats(ctx, sid, 0)
	if err != nil {
		return nil, fmt.Errorf("blockdev: statistics of session %d: %w", sid, err)
	}
	return &ConnStats{
		TxDataOctets: s.TxDataOctets, RxDataOctets: s.RxDataOctets,
		NOPOut: s.NOPTx, SCSICmd: s.SCSICmd, TMFCmd: s.TMFCmd, Login: s.Login, Text: s.Text,
		DataOut: s.DataOut, Logout: s.Logout, SNACK: s.SNACK,
		NOPIn: s.NOPRx, SCSIRsp: s.SCSIRsp, TMFRsp: s.TMFRsp, TextRsp: s.TextRsp, DataIn: s.DataIn,
		LogoutRsp: s.LogoutRsp, R2T: s.R2T, Async: s.Async, Reject: s.Reject,
		DigestErr: s.DigestErr, TimeoutErr: s.TimeoutErr,
	}, nil
}
