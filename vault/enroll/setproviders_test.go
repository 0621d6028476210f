package enroll_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"tagwatch/vault"
	"tagwatch/vault/enroll"
	"tagwatch/vault/renew/renewtest"
)

// xProvider builds a provider for xe's sandbox with the given client
// secret.
func (xe *xEnv) xProvider(sec string) enroll.Provider { return xe.stack.NewProvider(sec) }

// TestSetProviders: the code exchange uses the provider set last (a wrong
// client secret fails it, the right one stores the grant); a removed
// provider refuses new links and shows existing ones as unavailable, and
// serves them again once it returns.
func TestSetProviders(t *testing.T) {
	xe := newXEnv(t)
	link, rec := xe.link("ada", "x", "@Ada")

	xe.svc.SetProviders(map[string]enroll.Provider{"x": xe.xProvider("not-the-secret")})
	if p := xe.enroll(newBrowser(t), link, "1001"); p.status == http.StatusSeeOther || p.status == http.StatusOK {
		t.Fatalf("callback with a provider holding a wrong client secret = %d, want a refusal", p.status)
	}
	xe.expectNothingStored("ada", rec)

	xe.svc.SetProviders(map[string]enroll.Provider{"x": xe.xProvider(renewtest.ClientSecret)})
	expectPage(t, xe.enroll(newBrowser(t), link, "1001"), http.StatusOK, "all set")
	xe.expectEnrolled("ada", rec, "1001")

	link2, _ := xe.link("bob", "x", "")
	xe.svc.SetProviders(nil)
	_, _, err := xe.svc.CreateLink(context.Background(), vault.LinkRequest{UserID: "carol", Provider: "x", Watch: &testWatch, CreatedBy: "test"})
	if !errors.Is(err, enroll.ErrUnknownProvider) {
		t.Errorf("CreateLink(removed provider) = %v, want ErrUnknownProvider", err)
	}
	expectPage(t, newBrowser(t).get(link2), http.StatusServiceUnavailable, "not available")

	xe.svc.SetProviders(map[string]enroll.Provider{"x": xe.xProvider(renewtest.ClientSecret)})
	if p := newBrowser(t).get(link2); p.status != http.StatusOK {
		t.Errorf("landing page once the provider returned = %d, want 200", p.status)
	}
}
