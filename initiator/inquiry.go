package initiator

import (
	"context"
	"fmt"

	"github.com/gosan/iscsi/scsi"
)

// Inquiry reads the standard INQUIRY data of LUN n without opening it as a
// block device, so it works for every peripheral type (tgtd's LUN 0 is a
// controller, which has no capacity to read).
func (s *Session) Inquiry(ctx context.Context, n uint64) (scsi.Inquiry, error) {
	l := &LUN{s: s, n: n, raw: scsi.EncodeLUN(n)}
	buf := make([]byte, 255)
	var res Result
	if err := l.do(ctx, scsi.InquiryCDB(nil, uint16(len(buf))), buf, nil, &res); err != nil {
		return scsi.Inquiry{}, fmt.Errorf("iscsi: LUN %d: INQUIRY: %w", n, err)
	}
	inq, err := scsi.ParseInquiry(buf[:res.Transferred])
	if err != nil {
		return scsi.Inquiry{}, fmt.Errorf("iscsi: LUN %d: %w", n, err)
	}
	return inq, nil
}
