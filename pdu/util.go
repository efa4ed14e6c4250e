package pdu

import "strconv"

func itoa(n int) string { return strconv.Itoa(n) }

func hex16(v uint16) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[v>>12], digits[v>>8&15], digits[v>>4&15], digits[v&15]})
}
