//go:build !unix

package main

// cpuTime is not measured here (no getrusage): bench reports 0 CPU per I/O.
func cpuTime() int64 { return 0 }
