"""The demo page the local gateway serves at GET /: pick a course, pay, land on the result page.

It is a client of the public API only: it gets a dev token from GET /_dev/token (local
gateway only), lists GET /api/courses, posts the checkout with an Idempotency-Key, and sends
the browser to the checkout_url PayMob (the simulator) returned. Everything the API says is
rendered with textContent, never as HTML.
"""

from __future__ import annotations

import json
from html import escape

DEFAULT_STUDENT = "demo-student"
STUDENT_COOKIE = "devstack_student"

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem;
       color: #111; background: #fff; line-height: 1.5; }
.banner { background: #e8f0fe; border: 2px solid #1a3d7c; padding: .5rem .75rem; }
fieldset { border: 1px solid #555; margin: 1.25rem 0; padding: .75rem 1rem; }
label { display: block; margin: .35rem 0; }
button { font: inherit; margin-top: .5rem; padding: .5rem 1.25rem; background: #1a3d7c;
         color: #fff; border: 0; cursor: pointer; }
button[disabled] { background: #777; cursor: not-allowed; }
button:focus, input:focus, a:focus { outline: 3px solid #1a56db; outline-offset: 2px; }
.error { border: 2px solid #a00; color: #700; padding: .5rem .75rem; }
code { background: #f3f3f3; padding: 0 .25rem; }
"""

# The page's script: dev token, course list, checkout, redirect to PayMob.
_SCRIPT = """
const config = JSON.parse(document.getElementById("demo-config").textContent);
const statusBox = document.getElementById("demo-status");
const errorBox = document.getElementById("demo-error");
const list = document.getElementById("course-list");
const button = document.getElementById("checkout-button");
let token = null;

const EXPONENTS = {OMR: 3, KWD: 3, BHD: 3, JOD: 3};
function formatAmount(minor, currency) {
  // Integer minor units to text without floating point: 49875 OMR -> "49.875 OMR".
  const places = EXPONENTS[currency] ?? 2;
  const digits = String(minor).padStart(places + 1, "0");
  const whole = digits.slice(0, digits.length - places).replace(/\\B(?=(\\d{3})+(?!\\d))/g, ",");
  return `${whole}.${digits.slice(digits.length - places)} ${currency}`;
}
function showError(message) {
  errorBox.textContent = message;
  errorBox.hidden = false;
  statusBox.textContent = "";
}
function apiError(body, status) {
  const error = body && body.error;
  return error ? `${error.message} (${error.code})` : `HTTP ${status}`;
}
async function signIn() {
  const answer = await fetch(`/_dev/token?sub=${encodeURIComponent(config.student)}`);
  if (!answer.ok) throw new Error(`no dev token (HTTP ${answer.status})`);
  token = (await answer.json()).token;
}
async function loadCourses() {
  const answer = await fetch("/api/courses", {headers: {Authorization: `Bearer ${token}`}});
  const body = await answer.json().catch(() => null);
  if (!answer.ok) throw new Error(`courses: ${apiError(body, answer.status)}`);
  const courses = Array.isArray(body) ? body : (body.courses ?? body.items ?? []);
  list.replaceChildren();
  for (const course of courses) {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "radio";
    input.name = "course";
    input.value = course.course_id;
    input.id = `course-${course.course_id}`;
    const price = course.price_cents ?? course.amount_cents;
    label.append(input, ` ${course.title} — ${formatAmount(price, course.currency)}`);
    label.htmlFor = input.id;
    list.append(label);
  }
  // "Try again" on a failed payment's page comes back here with ?course=<id>.
  const wanted = new URLSearchParams(window.location.search).get("course");
  const preselected = wanted && document.getElementById(`course-${wanted}`);
  if (preselected) preselected.checked = true;
  if (!courses.length) list.textContent = "No active courses.";
  button.disabled = !courses.length;
  statusBox.textContent = `${courses.length} courses. Pick one and pay.`;
}
async function checkout(event) {
  event.preventDefault();
  errorBox.hidden = true;
  const chosen = document.querySelector("input[name=course]:checked");
  if (!chosen) { showError("Pick a course first."); return; }
  button.disabled = true;
  statusBox.textContent = "Creating the payment…";
  try {
    const answer = await fetch(`/api/courses/${encodeURIComponent(chosen.value)}/checkout`, {
      method: "POST",
      headers: {
        Authorization: `Bearer ${token}`,
        "Content-Type": "application/json",
        "Idempotency-Key": crypto.randomUUID(),
      },
      body: "{}",
    });
    const body = await answer.json().catch(() => null);
    if (!answer.ok) throw new Error(apiError(body, answer.status));
    statusBox.textContent = `Payment ${body.payment_id} created; opening PayMob…`;
    window.location.assign(body.checkout_url);
  } catch (error) {
    showError(`Checkout failed: ${error.message}`);
    button.disabled = false;
  }
}
document.getElementById("checkout-form").addEventListener("submit", checkout);
signIn().then(loadCourses).catch((error) => showError(error.message));
"""


def demo_page(*, student: str, history_url: str | None, admin_url: str | None) -> str:
    """The demo page for `student`; links to the history and admin pages that exist."""
    config = json.dumps({"student": student}).replace("<", "\\u003c")
    links = []
    if history_url:
        links.append(f'<li><a id="history-link" href="{escape(history_url)}">My payments</a></li>')
    if admin_url:
        links.append(f'<li><a id="admin-link" href="{escape(admin_url)}">Admin dashboard</a></li>')
    nav = f"<nav><ul>{''.join(links)}</ul></nav>" if links else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Course payments: local demo</title>
<style>{_STYLE}</style>
</head>
<body>
<p class="banner" role="note"><strong>Local stack</strong>: payments go to the PayMob
simulator; no real money moves.</p>
<main>
<h1>Buy a course</h1>
<p>Signed in as <code id="student-id">{escape(student)}</code>
(another student: add <code>?student=&lt;id&gt;</code> to this page's address).</p>
<form id="checkout-form">
<fieldset><legend>Courses</legend><div id="course-list">Loading…</div></fieldset>
<button type="submit" id="checkout-button" disabled>Pay with PayMob</button>
</form>
<p id="demo-status" role="status" aria-live="polite"></p>
<div id="demo-error" class="error" role="alert" hidden></div>
{nav}
</main>
<script type="application/json" id="demo-config">{config}</script>
<script>{_SCRIPT}</script>
</body>
</html>
"""


def course_page(course_id: str, title: str | None) -> str:
    """Where a paid student's course link leads locally: the course platform's stand-in."""
    heading = title or course_id
    return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{escape(heading)}</title></head>
<body>
<main>
<h1 id="course-title">{escape(heading)}</h1>
<p>The course platform would open course <code id="course-id">{escape(course_id)}</code>
here. <a href="/">Back to the demo</a></p>
</main>
</body>
</html>
"""
