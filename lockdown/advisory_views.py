"""The Advisories page: the MailEnable advisories in force and how many of the reader's servers each affects;
the import of a new advisory file (MSP admins)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from lockdown.advisory_store import (
    AdvisoryImportOutcome,
    advisories_import,
    current_advisory_document,
    fleet_exposure,
)
from lockdown.forms import AdvisoryImportForm
from lockdown.rules.advisories import AdvisoryError, AdvisoryFile, load_builtin_advisories
from servers.audit import Actor
from servers.tenancy import Action, request_scope, require

SEVERITY_BADGES = {"critical": "red", "high": "red", "medium": "orange", "low": "grey"}


@require_GET
def advisory_list(request: HttpRequest) -> HttpResponse:
    scope = request_scope(request)
    require(scope, Action.VIEW)
    row = current_advisory_document()
    document = AdvisoryFile.model_validate(row.document) if row is not None else load_builtin_advisories()
    exposure = fleet_exposure(scope=scope, advisories=document.advisories)
    can_import = scope.can(Action.MANAGE_PROFILES)
    rows = [
        {
            "advisory": e.advisory,
            "servers": e.servers,
            "possibly": e.possibly,
            "badge": SEVERITY_BADGES[e.advisory.severity],
            "editions": ", ".join("Enterprise Premium" if ed == "Premium" else ed.value for ed in e.advisory.editions),
            "ranges": [r.describe() for r in e.advisory.affected],
            "premium_only": e.advisory.premium_only,
        }
        for e in exposure.advisories
    ]
    return render(
        request,
        "lockdown/advisory_list.html",
        {
            "row": row,
            "document": document,
            "exposure": exposure,
            "rows": rows,
            "can_import": can_import,
            "show_importer": scope.is_msp,
            "form": AdvisoryImportForm() if can_import else None,
        },
    )


def _ids(ids: tuple[str, ...]) -> str:
    return ", ".join(ids) if ids else "none"


def _imported_message(name: str, outcome: AdvisoryImportOutcome) -> str:
    diff = outcome.diff
    return (
        f"Imported {name} (updated {outcome.document.updated.isoformat()}): added {_ids(diff.added)}; "
        f"removed {_ids(diff.removed)}; changed {_ids(diff.changed)}."
    )


@require_http_methods(["GET", "POST"])
def advisory_import(request: HttpRequest) -> HttpResponse:
    scope = request_scope(request)
    require(scope, Action.MANAGE_PROFILES)
    form = AdvisoryImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST":
        if form.is_valid() and form.text is not None:
            name = form.cleaned_data["file"].name or "upload"
            try:
                outcome = advisories_import(
                    scope=scope, actor=Actor.from_request(request), text=form.text, source_name=name
                )
            except AdvisoryError as exc:
                form.add_error("file", str(exc))
            else:
                if outcome.created:
                    messages.success(request, _imported_message(name, outcome))
                else:
                    messages.info(request, f"Nothing new: {name} is the advisory set in force.")
                return redirect("advisory_list")
        return render(request, "lockdown/advisory_import.html", {"form": form}, status=400)
    return render(request, "lockdown/advisory_import.html", {"form": form})
