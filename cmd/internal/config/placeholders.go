package config

import (
	"fmt"
	"reflect"
	"strings"
)

// A placeholder is a value the example configurations (configs/*.toml)
// write where only the operator knows what goes: in angle brackets,
// "<your X app's OAuth 2.0 client id>". No key of tagwatch takes such a
// value (ids, names, paths and URLs never start with '<' and end with
// '>'), so one left in a file is a configuration not yet edited:
// refused, naming the key and its line, whatever the key, instead of
// being called "ok" and failing at the first consent.
func isPlaceholder(v string) bool {
	v = strings.TrimSpace(v)
	return len(v) >= 2 && v[0] == '<' && v[len(v)-1] == '>'
}

// placeholders returns an error for every string value of c, in every
// table and array, that is still a placeholder. Keys are named as
// validate names them ("provider[0].client_id").
func (c *Config) placeholders() []fieldErr {
	var errs []fieldErr
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			tag := t.Field(i).Tag.Get("toml")
			if tag == "" || tag == "-" {
				continue
			}
			key, f := prefix+tag, v.Field(i)
			switch {
			case f.Kind() == reflect.String:
				if isPlaceholder(f.String()) {
					errs = append(errs, placeholderErr(key, f.String()))
				}
			case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String:
				for j := 0; j < f.Len(); j++ {
					if s := f.Index(j).String(); isPlaceholder(s) {
						errs = append(errs, placeholderErr(key, s))
					}
				}
			case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Struct:
				for j := 0; j < f.Len(); j++ {
					walk(fmt.Sprintf("%s[%d].", key, j), f.Index(j))
				}
			case f.Kind() == reflect.Struct && f.Type() != reflect.TypeOf(Duration{}):
				walk(key+".", f)
			}
		}
	}
	walk("", reflect.ValueOf(c).Elem())
	return errs
}

func placeholderErr(key, v string) fieldErr {
	return fieldErr{key, fmt.Sprintf("still holds the example's placeholder %q: replace it with your own value", strings.TrimSpace(v))}
}

// withPlaceholders returns the placeholder errors, then the other errors
// of validate except those about a key that holds a placeholder (a
// placeholder issuer is not also "not an absolute URL").
func withPlaceholders(ph, rest []fieldErr) []fieldErr {
	held := map[string]bool{}
	for _, fe := range ph {
		held[fe.key] = true
	}
	out := ph
	for _, fe := range rest {
		if !held[fe.key] {
			out = append(out, fe)
		}
	}
	return out
}
