package initiator

import (
	"context"
	"errors"
	"fmt"

	"github.com/gosan/iscsi/scsi"
)

// Execute sends a CDB (at most 16 bytes) to logical unit lun (a LUN
// number, as ReportLUNs returns) without opening it as a block device, so
// it reaches every peripheral type: tgtd's LUN 0 controller, a tape, an
// enclosure. dataIn receives read data (its length is the expected
// transfer length), dataOut is written; at most one may be non-empty. A
// non-GOOD status is not an error: it is in Result (use Result.Err). The
// error reports what kept the command from completing at the target
// (connection, session, context, an iSCSI-level failure). Execute does not
// retry after UNIT ATTENTION.
func (s *Session) Execute(ctx context.Context, lun uint64, cdb, dataIn, dataOut []byte) (Result, error) {
	var res Result
	err := s.execute(ctx, scsi.EncodeLUN(lun), cdb, dataIn, dataOut, &res)
	return res, err
}

// do runs a command on the LUN whose SAM encoding is raw and turns a
// non-GOOD status into an error, retrying once after a UNIT ATTENTION
// (reported after login and after resets).
func (s *Session) do(ctx context.Context, raw uint64, cdb, in, out []byte, res *Result) error {
	for attempt := 0; ; attempt++ {
		if err := s.execute(ctx, raw, cdb, in, out, res); err != nil {
			return err
		}
		if res.Status == scsi.StatusGood {
			return nil
		}
		err := res.Err()
		if err == nil {
			return nil
		}
		if attempt == 0 && errors.Is(err, scsi.ErrUnitAttention) {
			s.log.Debug("iscsi: unit attention absorbed", "lun", scsi.DecodeLUN(raw), "err", err)
			continue
		}
		return err
	}
}

// Inquiry reads the standard INQUIRY data of LUN n (with Execute, so for
// every peripheral type), absorbing one UNIT ATTENTION.
func (s *Session) Inquiry(ctx context.Context, n uint64) (scsi.Inquiry, error) {
	buf := make([]byte, 255)
	var res Result
	if err := s.do(ctx, scsi.EncodeLUN(n), scsi.InquiryCDB(nil, uint16(len(buf))), buf, nil, &res); err != nil {
		return scsi.Inquiry{}, fmt.Errorf("iscsi: LUN %d: INQUIRY: %w", n, err)
	}
	inq, err := scsi.ParseInquiry(buf[:res.Transferred])
	if err != nil {
		return scsi.Inquiry{}, fmt.Errorf("iscsi: LUN %d: %w", n, err)
	}
	return inq, nil
}
