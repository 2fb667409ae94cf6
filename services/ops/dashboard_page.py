"""The dashboard's two HTML pages: the sign-in form and the dashboard itself (its figures
filled in by static/dashboard.js from the JSON routes; no build step, nothing fetched from
anywhere but this service)."""

from __future__ import annotations

from html import escape

STYLE = (
    '<link rel="stylesheet" href="/dashboard/static/dashboard.css">\n'
    '<link rel="icon" href="/dashboard/static/favicon.svg" type="image/svg+xml">'
)


def _page(title: str, body: str, script: bool = False) -> str:
    scripts = '<script src="/dashboard/static/dashboard.js" defer></script>' if script else ""
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n{STYLE}\n{scripts}\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def sign_in_page(error: str = "") -> str:
    alert = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    return _page(
        "Sign in: Boomerang operations",
        f"""<main id="main" class="sign-in">
<h1>Boomerang operations</h1>
<p>Sign in with your operator token to see the figures, returns and queues.</p>
{alert}
<form method="post" action="/dashboard/sign-in">
<label for="token">Operator token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
</main>""",
    )


def dashboard_page(operator: str, return_id: str = "") -> str:
    return _page(
        "Boomerang operations dashboard",
        f"""<a class="skip" href="#main">Skip to the figures</a>
<header>
<h1>Boomerang operations</h1>
<p>Signed in as <strong id="operator">{escape(operator)}</strong></p>
<form method="post" action="/dashboard/sign-out"><button type="submit">Sign out</button></form>
</header>
<main id="main">
<p id="status" role="status" aria-live="polite">Loading the figures…</p>
<p><button type="button" id="refresh">Refresh now</button>
<span id="scraped-at" class="muted"></span></p>

<section aria-labelledby="kpis-title">
<h2 id="kpis-title">After-sales KPIs</h2>
<dl id="kpis" class="kpis"></dl>
</section>

<section aria-labelledby="charts-title">
<h2 id="charts-title">Charts</h2>
<div class="charts">
<figure id="chart-refund-time">
<figcaption id="chart-refund-time-caption">Refund time, request to money: refunds per
bucket</figcaption>
<div class="chart"></div>
</figure>
<figure id="chart-outcomes">
<figcaption id="chart-outcomes-caption">Returns finished, by outcome</figcaption>
<div class="chart"></div>
</figure>
<figure id="chart-refund-failures">
<figcaption id="chart-refund-failures-caption">Refund failure rate, by method and
provider</figcaption>
<div class="chart"></div>
</figure>
</div>
</section>

<section aria-labelledby="timeline-title">
<h2 id="timeline-title">Return timeline</h2>
<form id="timeline-form">
<label for="return-id">Return id</label>
<input id="return-id" name="return_id" value="{escape(return_id)}" autocomplete="off"
 spellcheck="false">
<button type="submit">Show timeline</button>
</form>
<div id="timeline" aria-live="polite"></div>
</section>

<section aria-labelledby="reviews-title">
<h2 id="reviews-title">Review queue</h2>
<div id="reviews"></div>
</section>

<section aria-labelledby="dlq-title">
<h2 id="dlq-title">Dead letters</h2>
<div id="dead-letters"></div>
</section>

<section aria-labelledby="lag-title">
<h2 id="lag-title">Consumer lag</h2>
<div id="lag"></div>
</section>
</main>""",
        script=True,
    )
