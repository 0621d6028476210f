package notify

import "testing"

func TestZZScratch(t *testing.T) {
	for _, u := range []string{
		"teams://11111111-1111-1111-1111-111111111111@22222222-2222-2222-2222-222222222222/33333333333333333333333333333333/44444444-4444-4444-4444-444444444444/V2ext?host=example.com",
		"wecom://",
		"lark://open.larksuite.com/",
		"zulip://bot%40example.com:apikey@zulip.example.com/?stream=general&topic=" + "0123456789012345678901234567890123456789012345678901234567890123456789",
	} {
		t.Logf("%s: %v", u, checkShoutrrrURL(u))
	}
}
