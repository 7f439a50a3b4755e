//! The web view's pages: server-rendered HTML (minijinja, escaped by default), one template per
//! page over a shared layout; the only script polls a running run's view.

use minijinja::Environment;

const LAYOUT: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}drillbook{% endblock %} · drillbook</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f6f7f9; }
header { background: #1d2330; color: #fff; padding: .6em 1.2em; display: flex; gap: 1.5em; align-items: center; }
header a { color: #fff; text-decoration: none; font-weight: 600; }
header .who { margin-left: auto; font-size: .9em; opacity: .85; }
header form { display: inline; }
main { padding: 1em 1.5em; max-width: 1200px; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; padding: .35em .6em; border-bottom: 1px solid #e3e6ea; }
th { background: #eef0f3; font-size: .85em; text-transform: uppercase; letter-spacing: .03em; }
pre { background: #10141c; color: #e8ecf2; padding: 1em; overflow-x: auto; font-size: 13px; }
.status-succeeded { color: #137333; } .status-failed, .status-aborted { color: #b3261e; }
.status-waiting_approval, .status-objective_missed { color: #a15c00; } .status-running { color: #0b57d0; }
.flash { background: #e8f0fe; border: 1px solid #aecbfa; padding: .6em 1em; }
.error { background: #fce8e6; border-color: #f4b8b2; }
.card { background: #fff; border: 1px solid #e3e6ea; padding: .8em 1em; margin: .8em 0; }
form.inline { display: inline; }
button { font: inherit; padding: .25em .9em; cursor: pointer; }
input[type=text], input[type=password], select { font: inherit; padding: .2em .4em; }
</style></head>
<body>
{% if user %}<header><a href="/runs">Runs</a><a href="/approvals">Approvals{% if pending %} ({{ pending }}){% endif %}</a><a href="/health">Drill health</a>
<span class="who">{{ user }} · {{ role }}</span>
<form method="post" action="/logout"><input type="hidden" name="csrf" value="{{ csrf }}"><button>Sign out</button></form></header>{% endif %}
<main>
{% if flash %}<p class="flash{% if flash_error %} error{% endif %}">{{ flash }}</p>{% endif %}
{% block body %}{% endblock %}
</main></body></html>
"#;

const LOGIN: &str = r#"{% extends "layout.html" %}{% block title %}Sign in{% endblock %}
{% block body %}<h1>drillbook</h1>
<form method="post" action="/login" class="card">
<p><label>Name <input type="text" name="name" autocomplete="username" required autofocus></label></p>
<p><label>Password <input type="password" name="password" autocomplete="current-password" required></label></p>
<p><button type="submit">Sign in</button></p>
</form>{% endblock %}
"#;

const RUNS: &str = r#"{% extends "layout.html" %}{% block title %}Runs{% endblock %}
{% block body %}<h1>Runs</h1>
<form method="get" action="/runs" class="card">
<label>Playbook <select name="playbook"><option value="">any</option>{% for p in playbooks %}<option{% if p == filter.playbook %} selected{% endif %}>{{ p }}</option>{% endfor %}</select></label>
<label>Mode <select name="mode"><option value="">any</option>{% for m in ["drill", "incident", "live"] %}<option{% if m == filter.mode %} selected{% endif %}>{{ m }}</option>{% endfor %}</select></label>
<label>Status <select name="status"><option value="">any</option>{% for s in statuses %}<option{% if s == filter.status %} selected{% endif %}>{{ s }}</option>{% endfor %}</select></label>
<label>Since <input type="text" name="since" value="{{ filter.since or '' }}" placeholder="7d or 2026-12-01T00:00:00Z" size="24"></label>
<button type="submit">Filter</button>
</form>
<table><tr><th>Run</th><th>Playbook</th><th>Mode</th><th>Status</th><th>Started (UTC)</th><th>Duration</th></tr>
{% for run in runs %}<tr><td><a href="/runs/{{ run.id }}">{{ run.id }}</a></td><td>{{ run.playbook }}</td><td>{{ run.mode }}</td>
<td class="status-{{ run.status }}">{{ run.status }}</td><td>{{ run.started }}</td><td>{{ run.duration }}</td></tr>
{% else %}<tr><td colspan="6">No runs{% if filtered %} match{% endif %}.</td></tr>{% endfor %}
</table>
<p>{{ runs|length }} of {{ total }} runs · state: {{ location }}</p>{% endblock %}
"#;

const RUN: &str = r#"{% extends "layout.html" %}{% block title %}{{ run.id }}{% endblock %}
{% block body %}<h1>{{ run.playbook }} · {{ run.id }}</h1>
<p>{{ run.mode }} · <span class="status-{{ run.status }}" id="status">{{ run.status }}</span> · started {{ run.started }} ·
reports: <a href="/runs/{{ run.id }}/report/html">HTML</a> · <a href="/runs/{{ run.id }}/report/md">Markdown</a> ·
<a href="/runs/{{ run.id }}/report/json">JSON</a> · <a href="/runs/{{ run.id }}/report/junit">JUnit</a></p>
{% for q in questions %}{% include "question.html" %}{% endfor %}
<pre id="live"{% if live %} data-src="/runs/{{ run.id }}/live"{% endif %}>{{ view }}</pre>
{% if live %}<script src="/static/live.js"></script>{% endif %}{% endblock %}
"#;

const QUESTION: &str = r#"<div class="card"><strong>{{ q.step }}</strong> in <a href="/runs/{{ q.run_id }}">{{ q.run_id }}</a> ({{ q.playbook }}) — {{ q.prompt }}
<br>asked {{ q.asked_at }} · needs {{ q.approvers }} {% if q.approvers == 1 %}person{% else %}different people{% endif %}{% if q.approved_by %} · approved so far: {{ q.approved_by|join(", ") }}{% endif %}{% if q.allowed %} · only {{ q.allowed|join(", ") }} may decide{% endif %}{% if q.signed %} · signed decisions only (drillbook approve --sign-with){% endif %}
{% if can_decide %}<form method="post" action="/runs/{{ q.run_id }}/decide" class="decide">
<input type="hidden" name="csrf" value="{{ csrf }}"><input type="hidden" name="step" value="{{ q.step }}">
<input type="text" name="reason" placeholder="reason (optional)" size="40">
<button type="submit" name="decision" value="approve">{% if q.ask == "attest" %}Attest{% else %}Approve{% endif %}</button>
<button type="submit" name="decision" value="reject">Reject</button></form>{% endif %}</div>
"#;

const APPROVALS: &str = r#"{% extends "layout.html" %}{% block title %}Approvals{% endblock %}
{% block body %}<h1>Waiting for a decision</h1>
{% for q in questions %}{% include "question.html" %}{% else %}<p>Nothing is waiting for a decision.</p>{% endfor %}
{% if not can_decide %}<p>You may look; deciding takes an approver's account.</p>{% endif %}{% endblock %}
"#;

const HEALTH: &str = r#"{% extends "layout.html" %}{% block title %}Drill health{% endblock %}
{% block body %}<h1>Drill health</h1>
<h2>Due</h2>
<table><tr><th>Playbook</th><th>Every</th><th>Due</th><th>Why</th></tr>
{% for v in due %}<tr><td>{{ v.name }}</td><td>{{ v.every }}</td><td class="{% if v.due %}status-failed{% else %}status-succeeded{% endif %}">{% if v.due %}due{% else %}not due{% endif %}</td><td>{{ v.reason }}</td></tr>
{% else %}<tr><td colspan="4">No playbook has runs yet.</td></tr>{% endfor %}</table>
{% for e in history %}<h2>{{ e.name }}</h2>
<table><tr>{% for h in headings %}<th>{{ h }}</th>{% endfor %}</tr>
{% for row in e.rows %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>{% endfor %}</table>
<p>trend: {{ e.trend }}<br>{{ e.next }}{% if e.latest %}<br>newest run: <a href="/runs/{{ e.latest }}">{{ e.latest }}</a>{% endif %}</p>
{% if e.chart %}{% with rto_history = e.chart, playbook = e.name %}<div class="card">{% include "rto_history.html.j2" %}</div>{% endwith %}{% endif %}{% endfor %}{% endblock %}
"#;

/// The script of a running run's page: the view read again every second; the page reloaded
/// when the run is over.
pub const LIVE_JS: &str = r#"const live = document.getElementById('live');
if (live && live.dataset.src) {
  const tick = async () => {
    try {
      const response = await fetch(live.dataset.src, { credentials: 'same-origin', cache: 'no-store' });
      if (response.ok) {
        live.textContent = await response.text();
        if (response.headers.get('x-run-over') === '1') { location.reload(); return; }
      }
    } catch (e) {}
    setTimeout(tick, 1000);
  };
  setTimeout(tick, 1000);
}
"#;

pub fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    for (name, text) in [
        ("layout.html", LAYOUT),
        ("login.html", LOGIN),
        ("runs.html", RUNS),
        ("run.html", RUN),
        ("question.html", QUESTION),
        ("approvals.html", APPROVALS),
        ("health.html", HEALTH),
        (crate::report::RTO_HISTORY_NAME, crate::report::RTO_HISTORY),
    ] {
        env.add_template(name, text)
            .expect("the web view's templates parse");
    }
    env
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_template_parses_and_escapes() {
        let env = super::templates();
        let html = env
            .get_template("login.html")
            .unwrap()
            .render(minijinja::context! { flash => "<script>x</script>" })
            .unwrap();
        assert!(html.contains("&lt;script&gt;x"), "{html}");
        assert!(!html.contains("<script>x"), "{html}");
    }
}
