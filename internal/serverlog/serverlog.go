// Package serverlog finds what a server's log says went wrong: its error
// lines, counted by their shape, commonest first. Stack frames are folded
// into the line they belong to (indented lines: Java's "\tat …", Python's
// "  File …", Go's "\t/path/file.go:12"), and lines that differ only in
// their numbers (thread names, fds, ports, times) are one shape, so a JVM
// that failed 16,487 connections the same way is one line, not 16,487.
package serverlog

import (
	"bufio"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"
)

// Line is one shape of error line: the first line of that shape, as the
// server wrote it, and how many lines had it.
type Line struct {
	Text  string `json:"text"`
	Count uint64 `json:"count"`
}

// Digest is a log digested: where it is, how many error lines it had, and
// the commonest of their shapes. The runner records it, the analysis
// quotes it.
type Digest struct {
	Path       string `json:"path"`
	ErrorLines uint64 `json:"error_lines"`
	Commonest  []Line `json:"commonest,omitempty"`
}

// Of digests the log at path: its n commonest error shapes.
func Of(path string, n int) (*Digest, error) {
	lines, total, err := Read(path, n)
	if err != nil {
		return nil, err
	}
	return &Digest{Path: path, ErrorLines: total, Commonest: lines}, nil
}

// maxText is how much of a line is kept: enough for an exception and its
// message, not a serialized request.
const maxText = 200

// errorWords are what an error line says, in the languages servers are
// written in: Java's exceptions and errors, Python's "OSError: [Errno 24]",
// Go's "accept: too many open files", nginx's "[crit] … failed".
var errorWords = regexp.MustCompile(`(?i)error|exception|errno|fail|fatal|panic|too many|refused|denied|cannot|can't|unable|broken pipe|out of memory|not enough|emfile|enfile`)

// numbers are what makes two lines of one shape differ.
var numbers = regexp.MustCompile(`0x[0-9a-fA-F]+|[0-9]+`)

// Read digests the log at path: its n commonest error shapes, and how many
// error lines it had in all.
func Read(path string, n int) ([]Line, uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	return Scan(f, n)
}

// Scan reads a log: its n commonest error shapes (ties in the order they
// first came), and how many error lines it had in all.
func Scan(r io.Reader, n int) ([]Line, uint64, error) {
	type shape struct {
		Line
		first int
	}
	shapes := map[string]*shape{}
	var total uint64
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for i := 0; sc.Scan(); i++ {
		line := strings.TrimRight(sc.Text(), " \t\r")
		if line == "" || line[0] == ' ' || line[0] == '\t' || strings.HasPrefix(line, "...") || !errorWords.MatchString(line) {
			continue // blank, a stack frame, or not an error
		}
		total++
		key := numbers.ReplaceAllString(line, "N")
		if s, ok := shapes[key]; ok {
			s.Count++
			continue
		}
		shapes[key] = &shape{Line{Text: clip(line), Count: 1}, i}
	}
	if err := sc.Err(); err != nil {
		return nil, 0, err
	}
	out := make([]*shape, 0, len(shapes))
	for _, s := range shapes {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].first < out[j].first
	})
	var lines []Line
	for _, s := range out[:min(n, len(out))] {
		lines = append(lines, s.Line)
	}
	return lines, total, nil
}

func clip(s string) string {
	if utf8.RuneCountInString(s) <= maxText {
		return s
	}
	r := []rune(s)
	return string(r[:maxText-1]) + "…"
}
