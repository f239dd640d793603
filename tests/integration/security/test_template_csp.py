"""No template relies on what the Content-Security-Policy blocks: inline event handlers and javascript: URLs.

The policy is `script-src 'self'`: a handler such as `onchange="this.form.submit()"` is refused by the
browser (a console error), so whatever it was meant to do silently does not happen.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

TEMPLATES = Path(__file__).resolve().parents[3] / "templates"
INLINE_HANDLER = re.compile(r"""<[^>]*\son[a-z]+\s*=""", re.IGNORECASE)
JAVASCRIPT_URL = re.compile(r"""(href|src|action)\s*=\s*["']?\s*javascript:""", re.IGNORECASE)


def test_no_template_has_an_inline_event_handler_or_a_javascript_url() -> None:
    found = []
    for path in sorted(TEMPLATES.rglob("*.html")):
        text = path.read_text(encoding="utf-8")
        for pattern in (INLINE_HANDLER, JAVASCRIPT_URL):
            found += [f"{path.relative_to(TEMPLATES)}: {m.group(0)[:80]}" for m in pattern.finditer(text)]
    assert found == []


@pytest.mark.django_db
def test_the_assignment_pages_customer_filter_has_a_button(client: Client, alice) -> None:
    """The filter worked only through an inline onchange (blocked by the CSP); it is a plain GET form now."""
    client.force_login(alice)
    page = client.get(reverse("assignment_list")).content.decode()
    form = page[page.index('<form method="get" class="filters">') :]
    form = form[: form.index("</form>")]
    assert 'name="customer"' in form
    assert '<button type="submit">Show</button>' in form
    assert "<noscript>" not in form
