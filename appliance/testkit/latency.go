package testkit

import (
	"slices"
	"testing"
	"time"
)

// Latencies runs fn b.N times and reports the p50 and p99 of one call in
// microseconds: a latency goal is about the typical and the slow request,
// which ns/op (the mean) hides.
func Latencies(b *testing.B, fn func()) {
	d := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := range d {
		t0 := time.Now()
		fn()
		d[i] = time.Since(t0)
	}
	b.StopTimer()
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(d[len(d)*99/100].Microseconds()), "p99-µs")
}
