package scsi

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func BenchmarkRead10CDB(b *testing.B) {
	var buf [16]byte
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_ = Read10CDB(buf[:0], uint32(i), 256, 0)
	}
}

func BenchmarkWrite10CDB(b *testing.B) {
	var buf [16]byte
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_ = Write10CDB(buf[:0], uint32(i), 256, FUA)
	}
}

func BenchmarkPlanRW(b *testing.B) {
	var buf [16]byte
	b.ReportAllocs()
	for b.Loop() {
		p := PlanRW(1<<20, 4096, 1024)
		for c, ok := p.Next(); ok; c, ok = p.Next() {
			_ = c.AppendWriteCDB(buf[:0], 0)
		}
	}
}

func BenchmarkParseSenseSegment(b *testing.B) {
	seg := unhex(hexSenseSegUA)
	b.ReportAllocs()
	for b.Loop() {
		_, _ = ParseSenseSegment(seg)
	}
}

// The hot path must not allocate: this guards it in plain `go test`.
func TestHotPathAllocs(t *testing.T) {
	var buf [16]byte
	seg := unhex(hexSenseSegUA)
	for name, fn := range map[string]func(){
		"Read10CDB":         func() { Read10CDB(buf[:0], 1, 2, 0) },
		"Write10CDB":        func() { Write10CDB(buf[:0], 1, 2, FUA) },
		"Read16CDB":         func() { Read16CDB(buf[:0], 1, 2, 0) },
		"Write16CDB":        func() { Write16CDB(buf[:0], 1, 2, FUA) },
		"SynchronizeCache":  func() { SynchronizeCache10CDB(buf[:0], 0, 0, false) },
		"TestUnitReady":     func() { TestUnitReadyCDB(buf[:0]) },
		"ParseSenseSegment": func() { _, _ = ParseSenseSegment(seg) },
		"ResponseError GOOD": func() {
			_ = ResponseError(StatusGood, nil)
		},
		"PlanRW": func() {
			p := PlanRW(0, 5000, 1024)
			for c, ok := p.Next(); ok; c, ok = p.Next() {
				c.AppendReadCDB(buf[:0], 0)
			}
		},
	} {
		assert.Zero(t, testing.AllocsPerRun(100, fn), name)
	}
}
