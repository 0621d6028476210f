package vault

import "errors"

// ErrNeedsConsent means a grant cannot be used until its user consents
// again: it needs a re-consent, or it was revoked. Token sources return
// errors that match it (errors.Is) when they refuse to hand out a token
// for such a grant, whether they knew it already (no request made) or the
// provider just refused the grant's refresh token. Callers (the worker)
// skip the work and wait for the consent; it is not a failure to retry.
var ErrNeedsConsent = errors.New("vault: grant needs a new consent")
