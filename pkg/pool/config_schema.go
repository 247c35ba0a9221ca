package pool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/authpool/authpool/config"
)

// poolSchema is config/auth-pool.schema.json compiled, and knownKeys the
// member names of each of its objects by JSON pointer, for "did you mean".
var poolSchema, knownKeys = compileSchema()

var printer = message.NewPrinter(language.English)

func compileSchema() (*jsonschema.Schema, map[string][]string) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(config.PoolSchema))
	if err != nil {
		panic("pool: config schema: " + err.Error())
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(config.PoolSchemaName, doc); err != nil {
		panic("pool: config schema: " + err.Error())
	}
	sch, err := c.Compile(config.PoolSchemaName)
	if err != nil {
		panic("pool: config schema: " + err.Error())
	}
	keys := map[string][]string{}
	var walk func(ptr string, v any)
	walk = func(ptr string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if props, ok := v["properties"].(map[string]any); ok {
				for k := range props {
					keys[ptr] = append(keys[ptr], k)
				}
			}
			for k, e := range v {
				walk(ptr+"/"+k, e)
			}
		case []any:
			for i, e := range v {
				walk(fmt.Sprintf("%s/%d", ptr, i), e)
			}
		}
	}
	walk("", doc)
	return sch, keys
}

// found is one problem the schema found. refuse marks a value the code
// cannot read at all (wrong type): the code's own complaints about it, and
// about anything under it, would only repeat it.
type found struct {
	Problem
	refuse bool
}

// schemaProblems validates tree with the schema and lists every leaf error
// with its path in this package's style (subscriptions[1].weeklyBudget).
func schemaProblems(tree any) []found {
	err := poolSchema.Validate(tree)
	var ve *jsonschema.ValidationError
	if err == nil || !errors.As(err, &ve) {
		if err != nil {
			return []found{{Problem: Problem{Message: err.Error()}, refuse: true}}
		}
		return nil
	}
	var out []found
	var ps problemList
	add := func(path, msg string, refuse bool) {
		if n := len(ps); n > maxProblems {
			return
		}
		ps.add(path, "%s", msg)
		out = append(out, found{Problem: ps[len(ps)-1], refuse: refuse})
	}
	var visit func(e *jsonschema.ValidationError)
	visit = func(e *jsonschema.ValidationError) {
		path, v := locate(tree, e.InstanceLocation)
		switch k := e.ErrorKind.(type) {
		case *kind.Type:
			add(path, typeMessage(path, k.Want, v), true)
		case *kind.AdditionalProperties:
			for _, name := range k.Properties {
				add(joinKey(path, name), unknownKeyMessage(e.SchemaURL, name), false)
			}
		case *kind.FalseSchema:
			add(path, "not allowed here", true)
		case *kind.Required:
			for _, name := range k.Missing {
				add(joinKey(path, name), "required", false)
			}
		case *kind.AnyOf, *kind.OneOf:
			// The branches' errors are alternatives: one message for all.
			add(path, "want "+strings.Join(branches(e), ", or "), false)
		default:
			if len(e.Causes) == 0 {
				add(path, e.ErrorKind.LocalizedString(printer), false)
			}
		}
		if _, group := e.ErrorKind.(*kind.AnyOf); group {
			return
		}
		if _, group := e.ErrorKind.(*kind.OneOf); group {
			return
		}
		for _, c := range e.Causes {
			visit(c)
		}
	}
	visit(ve)
	return out
}

// branches describes the failed alternatives of an anyOf.
func branches(e *jsonschema.ValidationError) []string {
	var out []string
	for _, c := range e.Causes {
		if len(c.Causes) > 0 {
			out = append(out, branches(c)...)
			continue
		}
		if _, isType := c.ErrorKind.(*kind.Type); isType {
			continue // "null", which every optional value may be
		}
		out = append(out, c.ErrorKind.LocalizedString(printer))
	}
	return out
}

// locate turns the validator's instance location into a path and the value
// found there.
func locate(tree any, loc []string) (string, any) {
	path, v := "", tree
	for _, tok := range loc {
		switch c := v.(type) {
		case []any:
			var i int
			fmt.Sscan(tok, &i)
			path += fmt.Sprintf("[%d]", i)
			if i >= 0 && i < len(c) {
				v = c[i]
			}
		case map[string]any:
			path, v = joinKey(path, tok), c[tok]
		}
	}
	return path, v
}

// typeMessage says what the schema wanted at path and what the file has.
func typeMessage(path string, want []string, got any) string {
	var ws []string
	for _, w := range want {
		switch w {
		case "integer":
			ws = append(ws, "a whole number")
		case "number":
			ws = append(ws, "a number")
		case "string":
			ws = append(ws, "a string")
		case "boolean":
			ws = append(ws, "true or false")
		case "object":
			if path == "" {
				ws = append(ws, "a JSON object") // the file as a whole
			} else {
				ws = append(ws, "an object")
			}
		case "array":
			ws = append(ws, "an array")
		}
	}
	g := "a string"
	switch v := got.(type) {
	case map[string]any:
		g = "an object"
	case []any:
		g = "an array"
	case json.Number:
		g = "the number " + v.String()
	case bool:
		g = fmt.Sprint(v)
	case nil:
		g = "null"
	}
	return "want " + strings.Join(ws, " or ") + ", got " + g
}

// unknownKeyMessage names a key the schema does not have, with the member
// it probably meant when only the case differs.
func unknownKeyMessage(schemaURL, key string) string {
	_, ptr, _ := strings.Cut(schemaURL, "#")
	msg := "unknown key"
	for _, name := range knownKeys[ptr] {
		if strings.EqualFold(name, key) {
			msg += " (did you mean " + name + "?)"
		}
	}
	return msg
}

var budgetPath = regexp.MustCompile(`^subscriptions\[\d+\]\.weeklyBudget$`)

// isBudgetPath reports whether path is a subscription's weeklyBudget, the
// value WEEKLY_BUDGET replaces.
func isBudgetPath(path string) bool { return budgetPath.MatchString(path) }

// shadowed reports whether path is, or lies under, a path in refused.
func shadowed(refused map[string]bool, path string) bool {
	for {
		if refused[path] {
			return true
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return refused[""]
		}
		path = path[:i]
	}
}

// readTree parses data into the value tree the schema validates: objects
// as map[string]any, numbers as json.Number. It records, with its path,
// every key given twice (the schema cannot see them) and data after the
// value, and stops at the first syntax error (ok false). It is a loop over
// tokens, not recursion, so deep nesting costs no stack.
func readTree(data []byte) (tree any, ps []Problem, ok bool) {
	var list problemList
	if len(bytes.Trim(data, " \t\r\n")) == 0 {
		list.add("", "the file is empty; want a JSON object")
		return nil, list, false
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	// A frame is an open object or array. Its path is built only when a
	// problem needs it: built eagerly, the paths of a deeply nested value
	// would cost the square of its depth.
	type frame struct {
		up     *frame
		member string         // in up: the key, or "" for an element
		index  int            // in up: the element's index
		obj    map[string]any // nil for an array
		arr    []any
		key    string // the member whose value comes next
		hasKey bool
	}
	var pathOf func(f *frame) string
	pathOf = func(f *frame) string {
		var parts []*frame
		for ; f != nil && f.up != nil; f = f.up {
			parts = append(parts, f)
		}
		path := ""
		for i := len(parts) - 1; i >= 0; i-- {
			if p := parts[i]; p.up.obj != nil {
				path = joinKey(path, p.member)
			} else {
				path += fmt.Sprintf("[%d]", p.index)
			}
		}
		return path
	}
	var stack []*frame
	done := false
	// put stores a finished value in the container on top of the stack.
	put := func(v any) {
		if len(stack) == 0 {
			tree, done = v, true
			return
		}
		f := stack[len(stack)-1]
		if f.obj != nil {
			f.obj[f.key], f.hasKey = v, false
			return
		}
		f.arr = append(f.arr, v)
	}
	for !done {
		var top *frame
		if n := len(stack); n > 0 {
			top = stack[n-1]
		}
		tok, err := dec.Token()
		if err != nil {
			// An array's own path: the decoder cannot tell whether an
			// element had begun.
			where := pathOf(top)
			if top != nil && top.obj != nil && top.hasKey {
				where = joinKey(where, top.key)
			}
			list.add(where, "%s", syntaxMessage(data, dec, err))
			return nil, list, false
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				f := &frame{up: top}
				if t == '{' {
					f.obj = map[string]any{}
				} else {
					f.arr = []any{}
				}
				if top != nil {
					f.member, f.index = top.key, len(top.arr)
				}
				stack = append(stack, f)
			default: // '}' or ']': the decoder has checked the nesting
				stack = stack[:len(stack)-1]
				if top.obj != nil {
					put(top.obj)
				} else {
					put(top.arr)
				}
			}
		case string:
			if top != nil && top.obj != nil && !top.hasKey {
				if _, dup := top.obj[t]; dup {
					list.add(joinKey(pathOf(top), t), "duplicate key")
				}
				top.key, top.hasKey = t, true
				continue
			}
			put(t)
		default:
			put(t)
		}
	}
	end := dec.InputOffset()
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		rest := data[end:]
		line, col := position(data, end+int64(len(rest)-len(bytes.TrimLeft(rest, " \t\r\n"))))
		list.add("", "unexpected data after the JSON object at line %d, column %d", line, col)
	}
	return tree, list, true
}

// syntaxMessage describes a syntax error with its line and column.
func syntaxMessage(data []byte, dec *json.Decoder, err error) string {
	// The decoder's offsets differ between its code paths; the one-pass
	// validator's is always just past the offending byte.
	at, msg := dec.InputOffset(), strings.TrimPrefix(err.Error(), "json: ")
	var se *json.SyntaxError
	if errors.As(json.Unmarshal(data, new(json.RawMessage)), &se) {
		at, msg = se.Offset-1, strings.TrimPrefix(se.Error(), "json: ")
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || msg == "unexpected end of JSON input" {
		at, msg = int64(len(data)), "unexpected end of file"
	}
	line, col := position(data, at)
	return fmt.Sprintf("invalid JSON at line %d, column %d: %s", line, col, msg)
}

// position turns a byte offset into a 1-based line and column.
func position(data []byte, off int64) (line, col int) {
	before := data[:max(0, min(off, int64(len(data))))]
	line = 1 + bytes.Count(before, []byte("\n"))
	return line, 1 + len(before) - (bytes.LastIndexByte(before, '\n') + 1)
}
