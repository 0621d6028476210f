package enroll

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unsafe"
)

// TestFlowJSON: a flow's stored form carries every field of flow, so a
// flow finished on another daemon is the flow started (a field added to
// flow but not to flowJSON fails here).
func TestFlowJSON(t *testing.T) {
	var f flow
	v := reflect.ValueOf(&f).Elem()
	for i := range v.NumField() {
		fv := v.Field(i)
		fv = reflect.NewAt(fv.Type(), unsafe.Pointer(fv.UnsafeAddr())).Elem()
		if fv.Kind() != reflect.String {
			t.Fatalf("flow.%s is a %s: give it a stored form in flowJSON and a value here", v.Type().Field(i).Name, fv.Kind())
		}
		fv.SetString(fmt.Sprintf("value %d", i))
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
	if !strings.Contains(string(b), `"code_verifier":"value 5"`) {
		t.Errorf("stored form %s: want the verifier under code_verifier", b)
	}
	if err := json.Unmarshal([]byte(`{"user_id":1}`), &back); err == nil {
		t.Error("a stored form of the wrong shape decodes")
	}
}
