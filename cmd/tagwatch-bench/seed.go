package main

import (
	"strconv"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/provider"
	"tagwatch/vault/secret"
	"tagwatch/worker/xapi/xsandbox"
)

// seedUsers adds n users to the sandbox (X ids 1000000 on) and, in db,
// each one's user record, an active grant sealed with the tokens the
// sandbox issued, and one watch of its own hashtag ("tag" + its id) on
// schedule, to the console; in transactions of 500 users. It returns the
// users' X ids.
func seedUsers(db *vault.DB, sb *xsandbox.Server, n int, schedule string) ([]string, error) {
	xids := make([]string, n)
	for b := 0; b < n; b += 500 {
		err := db.Update(func(tx *vault.Tx) error {
			for i := b; i < min(b+500, n); i++ {
				xid := strconv.Itoa(1_000_000 + i)
				xids[i] = xid
				if err := sb.AddUser(xsandbox.User{ID: xid, Username: "u" + xid}); err != nil {
					return err
				}
				at, rt, err := sb.Grant(xid, nil)
				if err != nil {
					return err
				}
				uid := "user" + xid
				g := vault.Grant{ID: "g" + xid, UserID: uid, Provider: "x", Subject: xid, Scopes: provider.XScopes,
					State: vault.GrantActive, AccessExpiry: time.Now().Add(2 * time.Hour)}
				if err := tx.PutUser(vault.User{ID: uid}); err != nil {
					return err
				}
				if err := tx.SealTokens(&g, vault.Tokens{Refresh: secret.NewRefreshToken(rt), Access: secret.NewAccessToken(at)}); err != nil {
					return err
				}
				if err := tx.PutGrant(g); err != nil {
					return err
				}
				if err := tx.PutWatch(vault.Watch{ID: "w" + xid, UserID: uid, Provider: "x", State: vault.WatchActive,
					WatchSpec: vault.WatchSpec{Hashtags: []string{"tag" + xid}, Schedule: schedule, Targets: []string{"console:"}}}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return xids, nil
}
