package vault

import (
	"errors"
	"fmt"
	"time"
)

// ErrRefreshBusy means another daemon sharing the store is refreshing the
// grant now: its in-flight marker is a live holder's (BeginRefresh), and
// presenting the stored refresh token as well would be the reuse that
// makes a provider revoke the whole token family. Wait, read the grant
// again and use what its refresh stores. Errors carrying it are
// *RefreshBusyError.
var ErrRefreshBusy = errors.New("vault: refresh in flight on another daemon")

// ErrNoHeartbeat means this daemon shares its store with others but its
// last heartbeat (DB.Heartbeat) failed, or it has sent none yet: the
// other daemons would take a refresh marker of its for a dead holder's
// and present the same refresh token again, so BeginRefresh begins none
// until a heartbeat is recorded.
var ErrNoHeartbeat = errors.New("vault: this daemon's heartbeat is not recorded in the registry of daemons sharing the store")

// RefreshBusyError says which daemon holds a grant's refresh: BeginRefresh
// found its in-flight marker and the holder is alive (or this daemon
// cannot tell yet). Nothing was changed. errors.Is(err, ErrRefreshBusy)
// is true for it.
type RefreshBusyError struct {
	// GrantID is the grant; Holder the daemon (kv.Daemon.ID, DB.Holder)
	// that committed the marker.
	GrantID, Holder string
	// Since is when that daemon's refresh began (its clock).
	Since time.Time
	// Alive is what the daemon registry said of Holder: false when the
	// holder has missed its heartbeats for a lease but this daemon has not
	// itself been steady for one (DB.SteadyFor), so it cannot tell a dead
	// holder from a live one cut off with it.
	Alive bool
}

func (e *RefreshBusyError) Error() string {
	why := "it is alive"
	if !e.Alive {
		why = "its heartbeats stopped, but this daemon's own have not been steady for a whole lease yet"
	}
	return fmt.Sprintf("the refresh of grant %s is held by daemon %s since %s (%s): wait for its outcome",
		e.GrantID, e.Holder, e.Since.UTC().Format(time.RFC3339), why)
}

// Is makes errors.Is(err, ErrRefreshBusy) true.
func (e *RefreshBusyError) Is(target error) bool { return target == ErrRefreshBusy }
