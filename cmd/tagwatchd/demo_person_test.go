package main

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"tagwatch/worker/xapi/xsandbox"
)

// person is one browser (one cookie jar, so the sandbox's sign-in session
// is kept from one consent to the next) used as a person uses the consent
// pages: open the link, press the button, then on the sandbox's page
// either authorize as the account it is signed in as, or sign out and
// pick an account from its list.
type person struct{ *browser }

func newPerson() *person { return &person{newBrowser()} }

var signedInField = regexp.MustCompile(`<input type="hidden" name="username" value="([^"]*)">`)

// consent follows link. pick "" authorizes as the account the sandbox's
// page is signed in as; otherwise the person signs out if the page is
// signed in as another account, and picks that one.
func (b *person) consent(ctx context.Context, link, public, sandbox, pick string) error {
	if _, _, err := b.do(ctx, "GET", link, nil, http.StatusOK); err != nil {
		return err
	}
	resp, _, err := b.do(ctx, "POST", link, url.Values{}, http.StatusSeeOther)
	if err != nil {
		return err
	}
	auth, _, err := followContinue(ctx, b.c, link, resp.Header.Get("Location"))
	if err != nil {
		return err
	}
	_, page, err := b.do(ctx, "GET", auth, nil, http.StatusOK)
	if err != nil {
		return err
	}
	authorize := sandbox + string(xsandbox.EndpointAuthorize)
	request := func(page string) string {
		if m := requestField.FindStringSubmatch(page); m != nil {
			return html.UnescapeString(m[1])
		}
		return ""
	}
	signedIn := ""
	if m := signedInField.FindStringSubmatch(page); m != nil {
		signedIn = html.UnescapeString(m[1])
	}
	switch {
	case pick == "" && signedIn == "":
		return fmt.Errorf("the sandbox's page is signed in as no account:\n%s", page)
	case pick == "":
		pick = signedIn
	case signedIn != "" && signedIn != pick:
		// Signing out answers 303 back to the same authorization request.
		if resp, _, err = b.do(ctx, "POST", authorize, url.Values{"request": {request(page)}, "action": {"signout"}}, http.StatusSeeOther); err != nil {
			return err
		}
		if _, page, err = b.do(ctx, "GET", sandbox+resp.Header.Get("Location"), nil, http.StatusOK); err != nil {
			return err
		}
		if signedInField.MatchString(page) || !strings.Contains(page, `value="`+pick+`"`) {
			return fmt.Errorf("after signing out the sandbox's page is still signed in, or does not offer @%s:\n%s", pick, page)
		}
	}
	resp, _, err = b.do(ctx, "POST", authorize, url.Values{"request": {request(page)}, "username": {pick}, "action": {"authorize"}}, http.StatusFound)
	if err != nil {
		return err
	}
	resp, _, err = b.do(ctx, "GET", resp.Header.Get("Location"), nil, http.StatusSeeOther)
	if err != nil {
		return err
	}
	_, _, err = b.do(ctx, "GET", public+resp.Header.Get("Location"), nil, http.StatusOK)
	return err
}
