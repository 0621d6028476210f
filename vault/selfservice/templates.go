package selfservice

import (
	"html/template"

	"tagwatch/vault/webpage"
)

// The page's templates, in the consent pages' look (webpage.Style) with
// what a page of watches adds: items, facts, state badges, forms with
// fields, rows of buttons. No script, no style attribute: the CSP allows
// the one nonce'd style element only. One column that fits a 390 px
// phone; wider, the card grows to 760 px.

// accountStyle is added to webpage.Style on the page's own templates.
const accountStyle = `
main{max-width:760px}
h2{margin:30px 0 12px}
h3{margin:22px 0 8px;font-size:15px}
.back{margin:0 0 14px;font-size:15px}
.back a{text-decoration:none}
.notice.ok{background:color-mix(in srgb,var(--ok) 14%,transparent);color:var(--ink)}
.alert{padding:10px 14px;border-radius:12px;background:color-mix(in srgb,var(--err) 12%,transparent);color:var(--ink);border-left:4px solid var(--err)}
.item{border:1px solid var(--line);border-radius:14px;padding:14px 14px 12px;margin:0 0 14px}
@media (max-width:639px){main{margin:12px 8px;padding:22px 16px}}
.item-head{display:flex;flex-wrap:wrap;gap:8px 12px;align-items:center;justify-content:space-between;margin:0 0 8px}
.item-head .name{font-size:17px}
.tags{gap:6px;margin:0}
.tags li{padding:3px 11px;border-radius:14px}
h1 .tags li{font-size:20px;padding:4px 14px}
.state{display:inline-block;padding:2px 10px;border-radius:999px;font-size:13px;font-weight:700;white-space:nowrap}
.state.active{background:color-mix(in srgb,var(--ok) 16%,transparent);color:var(--ok)}
.state.paused{background:var(--line);color:var(--muted)}
.state.suspended,.state.needs_reconsent,.state.revoked{background:color-mix(in srgb,var(--err) 13%,transparent);color:var(--err)}
.why{margin:0 0 8px;font-size:15px}
.facts{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:4px 14px;margin:8px 0;font-size:14px}
.facts dt{color:var(--muted)}
.facts dd{margin:0}
.facts dd span{display:block}
.facts .sub{color:var(--muted);font-size:13px}
.label{margin:14px 0 0;color:var(--muted);font-size:13px;font-weight:600}
.matches{margin:10px 0 0;padding:0;list-style:none;font-size:14px}
.matches li{padding:8px 0;border-top:1px solid var(--line)}
.matches .meta{display:block;color:var(--muted);font-size:13px}
.actions{display:flex;flex-wrap:wrap;gap:8px;margin:14px 0 0}
.actions form{margin:0}
.actions button,.button{display:inline-block;width:auto;padding:7px 13px;border:1px solid var(--line);border-radius:10px;background:transparent;color:var(--ink);font:inherit;font-size:15px;font-weight:600;text-decoration:none;text-align:center;line-height:1.4;cursor:pointer}
.actions button.primary{background:var(--accent);color:var(--accent-ink);border-color:var(--accent)}
.button.danger{color:var(--err)}
button.danger.solid{background:var(--err);color:#fff;border:0}
.account{margin:30px 0 0;padding:18px 0 0;border-top:1px solid var(--line)}
label{display:block;margin:18px 0 6px;font-weight:600}
input[type=text],textarea{display:block;width:100%;padding:11px 12px;border:1px solid var(--muted);border-radius:10px;background:var(--card);color:var(--ink);font:inherit}
textarea{min-height:70px;resize:vertical}
input[type=text]:focus-visible,textarea:focus-visible{outline:3px solid var(--accent);outline-offset:1px}
fieldset{margin:18px 0 0;padding:0;border:0}
legend{padding:0;font-weight:600}
label.check{display:flex;gap:10px;align-items:flex-start;margin:8px 0;font-weight:400}
label.check input{margin:4px 0 0;width:18px;height:18px;flex:none}
.hint{margin:6px 0 0;color:var(--muted);font-size:13px}
form.edit button[type=submit]{margin:22px 0 0}
ul.plain li{margin:0 0 6px}
.fine{text-align:start}
.fine.center{text-align:center;font-size:15px}
h1+.tags{margin:0 0 14px}
`

// partials are the pieces the page's templates share.
const partials = `
{{define "tags"}}<ul class="tags">{{range .}}<li>#{{.}}</li>{{end}}</ul>{{end}}
{{define "facts"}}<dl class="facts">
<dt>Searches</dt><dd>{{.ProviderLabel}} · {{.Cadence}}</dd>
<dt>Sends to</dt><dd>{{range .Targets}}<span>{{.}}</span>{{else}}nowhere{{end}}</dd>
<dt>Last run</dt><dd>{{.LastRun}}{{if .LastRunSub}}<span class="sub">{{.LastRunSub}}</span>{{end}}</dd>
{{if .NextRun}}<dt>Next run</dt><dd>{{.NextRun}}{{if .NextRunSub}}<span class="sub">{{.NextRunSub}}</span>{{end}}</dd>{{end}}
</dl>
{{if .Invalid}}<p class="alert">tagwatch's rules no longer accept this watch as it is, so it does not run: {{.Invalid}}. Change it to start it again.</p>{{end}}{{end}}
{{define "matches"}}{{if .Matches}}<ul class="matches">{{range .Matches}}<li>{{if .URL}}<a href="{{.URL}}" rel="noopener noreferrer">{{.Excerpt}}</a>{{else}}{{.Excerpt}}{{end}}<span class="meta">{{if .Author}}{{.Author}}{{end}}{{if and .Author .When}} · {{end}}{{if .When}}<time datetime="{{.Stamp}}" title="{{.At}}">{{.When}}</time>{{end}}</span></li>{{end}}</ul>
{{else if .MatchesErr}}<p class="muted">The recent matches cannot be shown right now.</p>{{end}}{{end}}
{{define "move"}}{{if .CanResume}}<form method="post" action="{{.Path}}/resume">{{if .Own}}<input type="hidden" name="from" value="watch">{{end}}<button type="submit" class="primary">Resume</button></form>{{end}}{{if .CanPause}}<form method="post" action="{{.Path}}/pause">{{if .Own}}<input type="hidden" name="from" value="watch">{{end}}<button type="submit" class="button">Pause</button></form>{{end}}{{end}}
{{define "targets"}}<fieldset><legend>Send new posts to</legend>
{{range .Targets}}<label class="check"><input type="checkbox" name="target" value="{{.Key}}"{{if .Checked}} checked{{end}}><span>{{.Label}}</span></label>
{{end}}<label for="new_targets">{{if .Targets}}Or somewhere else{{else}}Where{{end}}</label>
<textarea id="new_targets" name="new_targets" rows="2" placeholder="mailto:you@example.com" spellcheck="false" autocomplete="off">{{.NewTargets}}</textarea>
</fieldset>{{end}}
{{define "fields"}}<label for="hashtags">Hashtags</label>
<input id="hashtags" name="hashtags" type="text" value="{{.Form.Hashtags}}" placeholder="golang bbolt" autocomplete="off" autocapitalize="none" spellcheck="false" required>
<p class="hint">Separate them with spaces or commas; the # is optional.</p>
<label for="schedule">How often to search</label>
<input id="schedule" name="schedule" type="text" value="{{.Form.Schedule}}" placeholder="@every 30m" list="schedules" autocomplete="off" autocapitalize="none" spellcheck="false" required>
<datalist id="schedules">{{range .Schedules}}<option value="{{.}}">{{end}}</datalist>
<p class="hint">For example @every 30m, @hourly, @daily, or a cron line such as 0 8 * * 1-5.</p>
{{template "targets" .Form}}
<p class="hint">{{.TargetHint}}</p>{{end}}
`

// accountPage parses a template of the page: the shell with accountStyle
// (webpage.Parse), body, the partials.
func accountPage(name, body string) *template.Template {
	t := template.Must(webpage.Parse(name, accountStyle, body))
	return template.Must(t.Parse(partials))
}

var homeTmpl = accountPage("home", `
<h1>Your tagwatch page</h1>
<p class="lead">Signed in as <strong>{{.Account}}</strong> ({{.Provider}}).</p>
{{if .Notice}}<p class="notice" role="status">{{.Notice}}</p>{{end}}
{{if and .Done (not .DoneWatch)}}<p class="notice ok" role="status">{{.Done}}</p>{{end}}
<h2>Your watches</h2>
{{range .Watches}}<article class="item" id="watch-{{.ID}}">
{{if and $.Done (eq $.DoneWatch .ID)}}<p class="notice ok" role="status">{{$.Done}}</p>{{end}}
<div class="item-head">{{template "tags" .Hashtags}}<span class="state {{.State}}">{{.StateText}}</span></div>
{{if .Why}}<p class="why">{{.Why}}</p>{{end}}
{{template "facts" .}}
{{if .Matches}}<p class="label">Recent matches</p>{{end}}{{template "matches" .}}
<div class="actions">{{template "move" .}}<a class="button" href="{{.Path}}#change">Change</a><a class="button danger" href="{{.Path}}/delete">Delete</a></div>
</article>
{{else}}<p class="muted">You have no watches. Add one on an account below.</p>
{{end}}
<h2 id="access">Access you gave tagwatch</h2>
{{range .Grants}}<article class="item">
<div class="item-head"><strong class="name">{{.ProviderLabel}}</strong><span class="state {{.State}}">{{.StateText}}</span></div>
{{if .Why}}<p class="why">{{.Why}}</p>{{end}}
<dl class="facts">
{{if .Account}}<dt>Account</dt><dd>{{.Account}}</dd>{{end}}
{{if .Since}}<dt>Given</dt><dd>{{.Since}}</dd>
<dt>Last renewal</dt><dd>{{if .LastRenewal}}{{.LastRenewal}}{{else}}Not yet{{end}}</dd>{{end}}
<dt>Watches</dt><dd>{{.Watches}}</dd>
</dl>
<div class="actions">{{if .CanReconsent}}<form method="post" action="{{.Path}}/reconsent"><button type="submit" class="primary">{{.ReconsentLabel}}</button></form>{{end}}{{if .CanAdd}}<a class="button" href="{{$.P}}/watches/new?provider={{.Provider}}">Add a watch</a>{{end}}{{if .CanRevoke}}<a class="button danger" href="{{.Path}}/revoke">Revoke access</a>{{end}}</div>
</article>
{{else}}<p class="muted">None: tagwatch has no access to any of your accounts.</p>
{{end}}
<div class="account">
<div class="actions"><form method="post" action="{{.SignOut}}"><button type="submit" class="button">Sign out</button></form>{{if .CanSignOutEverywhere}}<form method="post" action="{{.SignOutEverywhere}}"><button type="submit" class="button">Sign out everywhere</button></form>{{end}}{{if .CanDelete}}<a class="button danger" href="{{.P}}/delete">Delete all my data</a>{{end}}</div>
<p class="fine">Signing out ends this page's session only: nothing changes for your watches.{{if .CanSignOutEverywhere}} Everywhere also signs you out at {{.Provider}}.{{else}} You stay signed in at {{.Provider}}: sign out there yourself if this is not your device.{{end}}</p>
</div>
`)

var watchTmpl = accountPage("watch", `
<p class="back"><a href="{{.P}}/">← Your tagwatch page</a></p>
{{with .W}}<h1>{{template "tags" .Hashtags}}</h1>
<p><span class="state {{.State}}">{{.StateText}}</span></p>
{{end}}{{if .Done}}<p class="notice ok" role="status">{{.Done}}</p>{{end}}
{{with .W}}{{if .Why}}<p class="why">{{.Why}}</p>{{end}}
{{template "facts" .}}{{end}}
{{if .MoveErr}}<p class="alert" role="alert">{{.MoveErr}}</p>{{end}}
<div class="actions">{{template "move" .W}}<a class="button danger" href="{{.W.Path}}/delete">Delete</a></div>
<h2>Recent matches</h2>
{{template "matches" .W}}{{if not .W.Matches}}{{if not .W.MatchesErr}}<p class="muted">None yet.</p>{{end}}{{end}}
<h2>Change it</h2>
<div id="change">{{if .ChangeErr}}<p class="alert" role="alert" id="change-error">Not saved: {{.ChangeErr}}</p>{{end}}</div>
<form method="post" action="{{.W.Path}}#change" class="edit">
{{template "fields" .}}
<button type="submit">Save changes</button>
</form>
`)

var newWatchTmpl = accountPage("new", `
<p class="back"><a href="{{.P}}/">← Your tagwatch page</a></p>
<h1>Add a watch on {{.ProviderLabel}}</h1>
<p class="lead">tagwatch searches {{.ProviderLabel}} for new posts with these hashtags, with the access you gave it, and sends them where you say.</p>
<div id="form">{{if .Err}}<p class="alert" role="alert">Not added: {{.Err}}</p>{{end}}</div>
<form method="post" action="{{.P}}/watches#form" class="edit">
<input type="hidden" name="provider" value="{{.Form.Provider}}">
{{template "fields" .}}
<button type="submit">Add the watch</button>
</form>
`)

var confirmTmpl = accountPage("confirm", `
<p class="back"><a href="{{.Back}}">← Back</a></p>
<div class="badge error" aria-hidden="true">!</div>
<h1>{{.Title}}</h1>
{{if .Tags}}{{template "tags" .Tags}}{{end}}
<p class="lead">{{.Lead}}</p>
{{if .Lines}}<ul class="plain">{{range .Lines}}<li>{{.}}</li>{{end}}</ul>{{end}}
<form method="post" action="{{.Action}}"><button type="submit" class="danger solid">{{.Button}}</button></form>
<p class="fine center"><a href="{{.Back}}">Keep everything as it is</a></p>
`)
