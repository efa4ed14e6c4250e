// Descriptions of common ADDITIONAL SENSE CODE / QUALIFIER pairs (SPC-4 annex D).

package scsi

// ASCText returns the description of an ADDITIONAL SENSE CODE and QUALIFIER
// pair, or "" if it is not in the table of common codes.
func ASCText(asc, ascq uint8) string {
	switch uint16(asc)<<8 | uint16(ascq) {
	case 0x0000:
		return "no additional sense information"
	case 0x0006:
		return "I/O process terminated"
	case 0x0016:
		return "operation in progress"
	case 0x0017:
		return "cleaning requested"
	case 0x001D:
		return "ATA pass through information available"
	case 0x0200:
		return "no seek complete"
	case 0x0300:
		return "peripheral device write fault"
	case 0x0400:
		return "logical unit not ready, cause not reportable"
	case 0x0401:
		return "logical unit is in process of becoming ready"
	case 0x0402:
		return "logical unit not ready, initializing command required"
	case 0x0403:
		return "logical unit not ready, manual intervention required"
	case 0x0404:
		return "logical unit not ready, format in progress"
	case 0x0405:
		return "logical unit not ready, rebuild in progress"
	case 0x0406:
		return "logical unit not ready, recalculation in progress"
	case 0x0407:
		return "logical unit not ready, operation in progress"
	case 0x0408:
		return "logical unit not ready, long write in progress"
	case 0x0409:
		return "logical unit not ready, self-test in progress"
	case 0x040A:
		return "logical unit not accessible, asymmetric access state transition"
	case 0x040B:
		return "logical unit not accessible, target port in standby state"
	case 0x040C:
		return "logical unit not accessible, target port in unavailable state"
	case 0x040D:
		return "logical unit not ready, structure check required"
	case 0x0410:
		return "logical unit not ready, auxiliary memory not accessible"
	case 0x0411:
		return "logical unit not ready, notify (enable spinup) required"
	case 0x0412:
		return "logical unit not ready, offline"
	case 0x0413:
		return "logical unit not ready, SA creation in progress"
	case 0x0414:
		return "logical unit not ready, space allocation in progress"
	case 0x041A:
		return "logical unit not ready, START STOP UNIT command in progress"
	case 0x041B:
		return "logical unit not ready, sanitize in progress"
	case 0x041C:
		return "logical unit not ready, additional power use not yet granted"
	case 0x0500:
		return "logical unit does not respond to selection"
	case 0x0800:
		return "logical unit communication failure"
	case 0x0801:
		return "logical unit communication time-out"
	case 0x0802:
		return "logical unit communication parity error"
	case 0x0C00:
		return "write error"
	case 0x0C02:
		return "write error - auto reallocation failed"
	case 0x0C03:
		return "write error - recommend reassignment"
	case 0x0E01:
		return "information unit too short"
	case 0x0E02:
		return "information unit too long"
	case 0x0E03:
		return "invalid field in command information unit"
	case 0x1001:
		return "logical block guard check failed"
	case 0x1002:
		return "logical block application tag check failed"
	case 0x1003:
		return "logical block reference tag check failed"
	case 0x1100:
		return "unrecovered read error"
	case 0x1101:
		return "read retries exhausted"
	case 0x1102:
		return "error too long to correct"
	case 0x1103:
		return "multiple read errors"
	case 0x1104:
		return "unrecovered read error - auto reallocate failed"
	case 0x110A:
		return "miscorrected error"
	case 0x110B:
		return "unrecovered read error - recommend reassignment"
	case 0x110C:
		return "unrecovered read error - recommend rewrite the data"
	case 0x1114:
		return "read error - LBA marked bad by application client"
	case 0x1401:
		return "record not found"
	case 0x1501:
		return "mechanical positioning error"
	case 0x1A00:
		return "parameter list length error"
	case 0x1D00:
		return "miscompare during verify operation"
	case 0x1D01:
		return "miscompare verify of unmapped LBA"
	case 0x2000:
		return "invalid command operation code"
	case 0x2002:
		return "access denied - no access rights"
	case 0x2100:
		return "logical block address out of range"
	case 0x2101:
		return "invalid element address"
	case 0x2400:
		return "invalid field in CDB"
	case 0x2500:
		return "logical unit not supported"
	case 0x2600:
		return "invalid field in parameter list"
	case 0x2601:
		return "parameter not supported"
	case 0x2602:
		return "parameter value invalid"
	case 0x2604:
		return "invalid release of persistent reservation"
	case 0x2700:
		return "write protected"
	case 0x2701:
		return "hardware write protected"
	case 0x2702:
		return "logical unit software write protected"
	case 0x2707:
		return "space allocation failed write protect"
	case 0x2800:
		return "not ready to ready change, medium may have changed"
	case 0x2900:
		return "power on, reset, or bus device reset occurred"
	case 0x2901:
		return "power on occurred"
	case 0x2902:
		return "SCSI bus reset occurred"
	case 0x2903:
		return "bus device reset function occurred"
	case 0x2904:
		return "device internal reset"
	case 0x2905:
		return "transceiver mode changed to single-ended"
	case 0x2906:
		return "transceiver mode changed to LVD"
	case 0x2907:
		return "I_T nexus loss occurred"
	case 0x2A00:
		return "parameters changed"
	case 0x2A01:
		return "mode parameters changed"
	case 0x2A02:
		return "log parameters changed"
	case 0x2A03:
		return "reservations preempted"
	case 0x2A04:
		return "reservations released"
	case 0x2A05:
		return "registrations preempted"
	case 0x2A06:
		return "asymmetric access state changed"
	case 0x2A07:
		return "implicit asymmetric access state transition failed"
	case 0x2A08:
		return "priority changed"
	case 0x2A09:
		return "capacity data has changed"
	case 0x2A10:
		return "timestamp changed"
	case 0x2A14:
		return "SA creation capabilities data has changed"
	case 0x2C00:
		return "command sequence error"
	case 0x2C09:
		return "previous reservation conflict status"
	case 0x2F00:
		return "commands cleared by another initiator"
	case 0x2F01:
		return "commands cleared by power loss notification"
	case 0x2F02:
		return "commands cleared by device server"
	case 0x3100:
		return "medium format corrupted"
	case 0x3101:
		return "format command failed"
	case 0x3200:
		return "no defect spare location available"
	case 0x3700:
		return "rounded parameter"
	case 0x3807:
		return "thin provisioning soft threshold reached"
	case 0x3900:
		return "saving parameters not supported"
	case 0x3A00:
		return "medium not present"
	case 0x3A01:
		return "medium not present - tray closed"
	case 0x3A02:
		return "medium not present - tray open"
	case 0x3E00:
		return "logical unit has not self-configured yet"
	case 0x3E01:
		return "logical unit failure"
	case 0x3E02:
		return "timeout on logical unit"
	case 0x3E03:
		return "logical unit failed self-test"
	case 0x3F00:
		return "target operating conditions have changed"
	case 0x3F01:
		return "microcode has been changed"
	case 0x3F02:
		return "changed operating definition"
	case 0x3F03:
		return "inquiry data has changed"
	case 0x3F04:
		return "component device attached"
	case 0x3F05:
		return "device identifier changed"
	case 0x3F0E:
		return "reported LUNs data has changed"
	case 0x3F0F:
		return "echo buffer overwritten"
	case 0x4400:
		return "internal target failure"
	case 0x4500:
		return "select or reselect failure"
	case 0x4700:
		return "SCSI parity error"
	case 0x4703:
		return "information unit iuCRC error detected"
	case 0x4705:
		return "protocol service CRC error"
	case 0x4800:
		return "initiator detected error message received"
	case 0x4900:
		return "invalid message error"
	case 0x4A00:
		return "command phase error"
	case 0x4B00:
		return "data phase error"
	case 0x4B01:
		return "invalid target port transfer tag received"
	case 0x4B02:
		return "too much write data"
	case 0x4B03:
		return "ACK/NAK timeout"
	case 0x4B04:
		return "NAK received"
	case 0x4B05:
		return "data offset error"
	case 0x4B06:
		return "initiator response timeout"
	case 0x4C00:
		return "logical unit failed self-configuration"
	case 0x4E00:
		return "overlapped commands attempted"
	case 0x5302:
		return "medium removal prevented"
	case 0x5503:
		return "insufficient resources"
	case 0x5504:
		return "insufficient registration resources"
	case 0x5D00:
		return "failure prediction threshold exceeded"
	case 0x5DFF:
		return "failure prediction threshold exceeded (false)"
	case 0x5E00:
		return "low power condition on"
	case 0x6500:
		return "voltage fault"
	}
	return ""
}
