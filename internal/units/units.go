// Package units formats counts and byte sizes for people.
package units

import (
	"fmt"
	"strconv"
	"strings"
)

// Count formats an integer with thousands separators: 1,000,000.
func Count[T int | int64 | uint64](v T) string {
	s := strconv.FormatInt(int64(v), 10)
	if v > 0 && uint64(v) > 1<<63-1 {
		s = strconv.FormatUint(uint64(v), 10)
	}
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Approx rounds a count for a sentence: 2.2M, 840k, 1,000.
func Approx(v uint64) string {
	switch {
	case v >= 1_000_000:
		return strconv.FormatFloat(float64(v)/1e6, 'f', 1, 64) + "M"
	case v >= 10_000:
		return strconv.FormatUint((v+500)/1000, 10) + "k"
	}
	return Count(v)
}

// Bytes formats a byte count in binary units: 7.2 KiB.
func Bytes(b uint64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := uint64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}

// Off is how far actual is from predicted, in percent of predicted.
func Off(actual, predicted uint64) float64 {
	return 100 * (float64(actual) - float64(predicted)) / float64(max(1, predicted))
}
