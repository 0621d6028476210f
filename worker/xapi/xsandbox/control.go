package xsandbox

import (
	"bytes"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// CheckLoopback refuses a listen address whose host is not a loopback IP
// address (127.0.0.0/8, ::1): the sandbox hands out tokens to anyone who
// reaches it and serves a control surface without authentication, so it
// is for this machine only. A host name (even localhost) is refused too:
// what it resolves to is not the sandbox's to decide.
func CheckLoopback(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("xsandbox: listen address %q is not host:port", addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		return fmt.Errorf("xsandbox: listen address %q: port %q is not a TCP port", addr, port)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.Unmap().IsLoopback() || ip.Zone() != "" {
		return fmt.Errorf("xsandbox: listen address %q is not on loopback: the sandbox serves only this machine (use 127.0.0.1:PORT or [::1]:PORT)", addr)
	}
	return nil
}

// ControlPath is the control page of a sandbox: its accounts, their grants,
// and buttons that do to the running sandbox what X does (a user revoking
// the app, a lost token answer, a rate limit, the usage cap), each a POST
// below it.
const ControlPath = "/sandbox/"

// The control surface's actions, POST paths below ControlPath.
const (
	controlRevoke    = ControlPath + "revoke"     // form: user=ID
	controlDropToken = ControlPath + "drop-token" // the next refresh answer is lost
	controlRateLimit = ControlPath + "rate-limit" // form: seconds=N (0 lifts)
	controlUsageCap  = ControlPath + "usage-cap"  // form: action=set|lift
)

// controlRoutes registers the control surface on mux. Every action is a
// POST behind net/http's cross-origin protection (Sec-Fetch-Site, Origin),
// so a page on another site cannot press the buttons; GET only shows.
func (s *Server) controlRoutes(mux *http.ServeMux) {
	cop := http.NewCrossOriginProtection()
	mux.HandleFunc("GET "+ControlPath+"{$}", s.handleControlPage)
	post := func(path string, act func(r *http.Request) (string, error)) {
		mux.Handle("POST "+path, cop.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
			if err := r.ParseForm(); err != nil {
				errorPage(w, http.StatusBadRequest, "The form could not be read.")
				return
			}
			// One log line an action (the sandbox's terminal shows it),
			// with what the page says: no token or secret is in it.
			action := strings.TrimPrefix(path, ControlPath)
			done, err := act(r)
			if err != nil {
				s.log.Info("sandbox control refused", "action", action, "err", err.Error())
				s.renderControl(w, http.StatusBadRequest, "", err.Error())
				return
			}
			s.log.Info("sandbox control", "action", action, "done", done)
			// Post/redirect/get: the page says what was done once, and
			// reloading it does not do it again.
			s.mu.Lock()
			s.controlNote = done
			s.mu.Unlock()
			http.Redirect(w, r, ControlPath, http.StatusSeeOther)
		})))
	}
	post(controlRevoke, func(r *http.Request) (string, error) {
		id := r.PostForm.Get("user")
		u, ok := s.store.user(id)
		if !ok {
			return "", fmt.Errorf("there is no sandbox account with id %q", id)
		}
		n := s.RevokeUser(id)
		return fmt.Sprintf("@%s revoked the app: %s, %s tokens refused from now on", u.Username,
			plural(n, "grant ended", "grants ended"), pick(n, "its", "their")), nil
	})
	post(controlDropToken, func(*http.Request) (string, error) {
		s.DropAfterRotateNext(1)
		return "the next refresh is done but its answer is lost (the connection closes)", nil
	})
	post(controlRateLimit, func(r *http.Request) (string, error) {
		secs, err := strconv.Atoi(r.PostForm.Get("seconds"))
		if err != nil || secs < 0 || secs > 3600 {
			return "", fmt.Errorf("seconds must be a whole number from 0 to 3600, got %q", r.PostForm.Get("seconds"))
		}
		if secs == 0 {
			s.SetRateLimit(EndpointSearch, xSearchLimit.PerUser, xSearchLimit.PerApp, xSearchLimit.Window)
			return "search limits are X's again: 300 per user, 450 per app per 15 minutes", nil
		}
		s.RateLimitFor(EndpointSearch, time.Duration(secs)*time.Second)
		return fmt.Sprintf("every search answers 429 Too Many Requests for %d s (x-rate-limit-reset says when)", secs), nil
	})
	post(controlUsageCap, func(r *http.Request) (string, error) {
		switch r.PostForm.Get("action") {
		case "set":
			n := s.CapUsage()
			return fmt.Sprintf("usage cap reached after %s this month: searches answer usage-capped. %s %s",
				plural(int(n), "post read", "posts read"), capEffect, probeNow), nil
		case "lift":
			s.SetMonthlyPostBudget(0)
			return "usage cap lifted: searches are served again. " + liftEffect + " " + probeNow, nil
		}
		return "", fmt.Errorf("action must be set or lift, got %q", r.PostForm.Get("action"))
	})
}

// What the usage cap does to tagwatch, as the control page says it (the
// probe interval is the daemon's default, worker.Config.CapProbeInterval).
// The page says probeNow once, after both.
const (
	capEffect  = "tagwatch suspends the provider's watches until its next probe, an hour later by default."
	liftEffect = "tagwatch's suspended watches resume at its next probe, not before."
	probeNow   = "tagwatchctl watches run WATCH probes now."
)

// plural is "1 consent", "2 consents": n and the noun that fits it.
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// pick is the word of one or of many that fits n.
func pick(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// xSearchLimit is X's rate limit of recent search (Start's default).
var xSearchLimit = RateLimit{PerUser: 300, PerApp: 450, Window: 15 * time.Minute}

// RateLimitFor makes every request to ep answer X's 429 Too Many Requests
// until d has passed on the sandbox clock, as when the app's window is
// spent: the app's window of ep restarts now, lasting d, with nothing left
// (x-rate-limit-reset says when it ends). After it, ep is limited per
// window of d with its limits as they were. SetRateLimit undoes it.
func (s *Server) RateLimitFor(ep Endpoint, d time.Duration) {
	checkEndpoint(ep)
	s.mu.Lock()
	defer s.mu.Unlock()
	lim := s.limits[ep]
	if lim.PerApp <= 0 {
		lim.PerApp = max(lim.PerUser, 1)
	}
	lim.Window = d
	s.limits[ep] = lim
	for k := range s.userWin {
		if k.ep == ep {
			delete(s.userWin, k)
		}
	}
	s.appWin[ep] = &window{start: s.now(), count: lim.PerApp}
}

// CapUsage makes the app reach its monthly usage cap now: from the next
// search on, searches answer X's usage-capped 429, whatever the budget
// and the month, until SetMonthlyPostBudget sets a budget again (0 lifts
// the cap). It returns the posts read this month.
func (s *Server) CapUsage() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rollMonthLocked(s.now())
	s.capReached = true
	return s.monthRead
}

var controlTmpl = template.Must(template.New("control").Funcs(template.FuncMap{"plural": plural}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>X sandbox · control</title><style>` + pageStyle + `
body{align-items:flex-start}.card{max-width:720px}
table{width:100%;border-collapse:collapse;margin:0 0 22px;font-size:14px}
th,td{padding:8px 6px;border-bottom:1px solid #eff3f4;text-align:left;vertical-align:middle}
th{color:#536471;font-weight:700}
td form{margin:0}td button{padding:6px 12px;font-size:14px}
h2{margin:24px 0 8px;font-size:18px}
.row{display:flex;flex-wrap:wrap;gap:10px;align-items:center;margin:0 0 12px}
.row form{display:flex;gap:8px;align-items:center;margin:0}
.row input{width:6em;margin:0;padding:8px}
.ok{margin:0 0 16px;padding:10px 12px;border-radius:8px;background:#e8f5e9;color:#1b5e20;font-size:14px}
.state{color:#536471;font-size:14px}
@media (max-width:519px){.hide-narrow{display:none}}
</style></head>
<body><main class="card">
<div class="logo" aria-hidden="true">𝕏</div>
<span class="tag">Sandbox control</span>
<h1>{{.App}} at the X sandbox</h1>
<p class="sub">Do to the running sandbox what X and its users do, and watch tagwatch handle it.</p>
{{if .Done}}<p class="ok" role="status">{{.Done}}</p>{{end}}
{{if .Error}}<p class="err" role="alert">{{.Error}}</p>{{end}}
<h2>Accounts</h2>
<table><thead><tr><th>Account</th><th class="hide-narrow">Id</th><th>Grants</th><th></th></tr></thead><tbody>
{{range .Users}}<tr><td><b>{{.Name}}</b> @{{.Username}}</td><td class="hide-narrow">{{.ID}}</td><td>{{.Grants}}</td>
<td>{{if .Grants}}<form method="post" action="/sandbox/revoke"><input type="hidden" name="user" value="{{.ID}}"><button class="deny" type="submit">Revoke {{$.App}}</button></form>{{end}}</td></tr>
{{else}}<tr><td colspan="4">No accounts.</td></tr>{{end}}
</tbody></table>
<h2>Faults</h2>
<div class="row"><form method="post" action="/sandbox/drop-token"><button class="deny" type="submit">Lose the next token answer</button></form>
<span class="state">{{if .Drops}}armed: {{.Drops}}{{else}}not armed{{end}}</span></div>
<div class="row"><form method="post" action="/sandbox/rate-limit"><label for="seconds">Rate-limit searches for</label>
<input id="seconds" name="seconds" type="number" min="1" max="3600" value="60"> s <button class="deny" type="submit">Limit</button></form>
<form method="post" action="/sandbox/rate-limit"><input type="hidden" name="seconds" value="0"><button class="deny" type="submit">Restore X's limits</button></form></div>
<div class="row"><form method="post" action="/sandbox/usage-cap"><input type="hidden" name="action" value="set"><button class="deny" type="submit">Reach the usage cap</button></form>
<form method="post" action="/sandbox/usage-cap"><input type="hidden" name="action" value="lift"><button class="deny" type="submit">Lift the cap</button></form>
<span class="state">{{if .Capped}}cap reached; {{.Read}} posts read this month{{else if .Budget}}cap: {{.Budget}} posts a month, {{.Read}} read{{else}}no cap; {{.Read}} posts read this month{{end}}</span></div>
<p class="state">The usage cap makes every search answer X's usage-capped 429: ` + capEffect + ` Lifting it here resumes nothing by itself: ` + liftEffect + ` Either way, ` + probeNow + `</p>
<h2>Counts</h2>
<p class="state">{{plural .Stats.Consents "consent" "consents"}}, {{plural (index .Stats.TokenRequests "refresh_token") "refresh" "refreshes"}}, {{plural .Stats.UserRevocations "revocation" "revocations"}}, {{plural .Searches "search" "searches"}}, {{plural .Stats.PostsReadTotal "post read" "posts read"}}, {{.Stats.RateLimited}} rate-limited, {{.Stats.UsageCapped}} usage-capped, {{plural .Stats.Drops "answer lost" "answers lost"}}.</p>
<p class="foot">This is the tagwatch X sandbox, not x.com. No real account is involved. <a href="/sandbox/">Reload</a></p>
</main></body></html>
`))

type controlUser struct {
	User
	Grants int
}

type controlData struct {
	App, Done, Error string
	Users            []controlUser
	Drops            int
	Budget, Read     int64
	Capped           bool
	Searches         int
	Stats            Stats
}

func (s *Server) handleControlPage(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	done := s.controlNote
	s.controlNote = ""
	s.mu.Unlock()
	s.renderControl(w, http.StatusOK, done, "")
}

func (s *Server) renderControl(w http.ResponseWriter, status int, done, msg string) {
	users, _ := s.store.userList(1 << 20)
	d := controlData{App: s.cfg.AppName, Done: done, Error: msg}
	s.mu.Lock()
	for _, u := range users {
		d.Users = append(d.Users, controlUser{User: u, Grants: s.liveGrantsLocked(u.ID)})
	}
	d.Drops = s.dropAfterRotate
	s.rollMonthLocked(s.now())
	d.Budget, d.Read, d.Capped = s.budget, s.monthRead, s.capReached
	d.Stats = s.stats.clone()
	s.mu.Unlock()
	for _, n := range d.Stats.APICalls[EndpointSearch] {
		d.Searches += n
	}
	var b bytes.Buffer
	if err := controlTmpl.Execute(&b, d); err != nil {
		s.log.Error("render control page", "err", err)
		errorPage(w, http.StatusInternalServerError, "The page could not be shown.")
		return
	}
	writeHTML(w, status, b.Bytes())
}

// liveGrantsLocked counts the grants (token families) of userID that are
// not revoked. s.mu must be held.
func (s *Server) liveGrantsLocked(userID string) int {
	n := 0
	for _, g := range s.grants[userID] {
		if !g.revoked {
			n++
		}
	}
	return n
}
