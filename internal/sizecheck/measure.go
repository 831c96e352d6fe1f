package main

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"strings"
)

// file is what sizecheck measures of one Go file.
type file struct {
	path      string
	lines     int
	test      bool
	generated bool
	funcs     map[string]int // lines of each function, by name (Type.Method for methods)
	structs   map[string]int // fields of each struct that is not a schema
}

// measure parses one file.
func measure(path string, src []byte) (*file, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, src, parser.ParseComments)
	if err != nil {
		return nil, err
	}
	m := &file{path: path, lines: bytes.Count(src, []byte("\n")), test: strings.HasSuffix(path, "_test.go"),
		generated: ast.IsGenerated(f), funcs: map[string]int{}, structs: map[string]int{}}
	lines := func(n ast.Node) int { return fset.Position(n.End()).Line - fset.Position(n.Pos()).Line + 1 }
	ast.Inspect(f, func(n ast.Node) bool {
		switch d := n.(type) {
		case *ast.FuncDecl:
			name := d.Name.Name
			if d.Recv != nil && len(d.Recv.List) == 1 {
				name = recvName(d.Recv.List[0].Type) + "." + name
			}
			m.funcs[name] = lines(d)
		case *ast.TypeSpec:
			if st, ok := d.Type.(*ast.StructType); ok && !schema(st) {
				m.structs[d.Name.Name] = fields(st)
			}
		}
		return true
	})
	return m, nil
}

func recvName(e ast.Expr) string {
	switch t := e.(type) {
	case *ast.StarExpr:
		return recvName(t.X)
	case *ast.IndexExpr:
		return recvName(t.X)
	case *ast.Ident:
		return t.Name
	}
	return "?"
}

// fields counts a struct's fields: each name, and each embedded type once.
func fields(st *ast.StructType) int {
	n := 0
	for _, f := range st.Fields.List {
		n += max(1, len(f.Names))
	}
	return n
}

// schema says a struct is serialized: its fields carry json tags.
func schema(st *ast.StructType) bool {
	for _, f := range st.Fields.List {
		if f.Tag != nil && strings.Contains(f.Tag.Value, `json:"`) {
			return true
		}
	}
	return false
}

// breaches are the file's sentences for sizecheck.
func (m *file) breaches() []string {
	var out []string
	switch {
	case m.test && m.lines > maxTestFileLines:
		out = append(out, fmt.Sprintf("%s: %d lines, a test file under %d", m.path, m.lines, maxTestFileLines+1))
	case !m.test && m.lines > maxFileLines:
		out = append(out, fmt.Sprintf("%s: %d lines, more than %d", m.path, m.lines, maxFileLines))
	}
	if m.test {
		return out
	}
	for name, n := range m.funcs {
		if n > maxFuncLines {
			out = append(out, fmt.Sprintf("%s: func %s is %d lines, more than %d", m.path, name, n, maxFuncLines))
		}
	}
	for name, n := range m.structs {
		if n > maxFields {
			out = append(out, fmt.Sprintf("%s: type %s has %d fields, more than %d (a schema, with json tags, may)", m.path, name, n, maxFields))
		}
	}
	return out
}
