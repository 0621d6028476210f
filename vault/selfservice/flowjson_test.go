package selfservice

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"unsafe"
)

// TestFlowJSON: a flow's stored form carries every field of flow, so a
// sign-in finished on another daemon is the one started (a field added
// to flow but not to flowJSON fails here).
func TestFlowJSON(t *testing.T) {
	var f flow
	v := reflect.ValueOf(&f).Elem()
	for i := range v.NumField() {
		fv := v.Field(i)
		fv = reflect.NewAt(fv.Type(), unsafe.Pointer(fv.UnsafeAddr())).Elem()
		switch fv.Kind() {
		case reflect.String:
			fv.SetString(fmt.Sprintf("value %d", i))
		case reflect.Int, reflect.Int64:
			fv.SetInt(int64(i + 1))
		default:
			t.Fatalf("flow.%s is a %s: give it a stored form in flowJSON and a value here", v.Type().Field(i).Name, fv.Kind())
		}
	}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	var back flow
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back != f {
		t.Errorf("flow after its stored form = %+v, want %+v (stored: %s)", back, f, b)
	}
	if err := json.Unmarshal([]byte(`{"kind":"x"}`), &back); err == nil {
		t.Error("a stored form of the wrong shape decodes")
	}
}
