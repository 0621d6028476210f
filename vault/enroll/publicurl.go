package enroll

import (
	"fmt"
	"net/url"

	"tagwatch/vault/provider"
)

// CheckPublicURL applies the rule for the base URL users reach the consent
// pages at (Config.PublicURL, tagwatchd's http.public_url): an absolute
// https URL, or http on a loopback host (provider.CheckURL), with no
// query and no fragment, because the pages and the OAuth redirect URI
// (PublicURL + "/callback") are built by appending a path to it. New
// applies it, and so does tagwatchd's configuration check, so
// check-config refuses what the daemon refuses at start.
func CheckPublicURL(raw string) error {
	if err := provider.CheckURL(raw); err != nil {
		return err
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("must be an absolute URL, got %q", raw)
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return fmt.Errorf("must not have a query or fragment (the pages and the redirect URI are paths below it), got %q", raw)
	}
	return nil
}
