"""``/api/v1/reports``: a grid worker files a report (category, text, photos, GPS point); read it back."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints, WithJsonSchema
from starlette.requests import Request
from starlette.responses import Response

from kernel.wire import ClientMsgId
from messaging.tasks.reports import Filing
from zzd.http.actors import current_person
from zzd.http.common import check_send_rate, json_body
from zzd.http.contract import BodyModel, Endpoints, Id, created, reply
from zzd.http.schemas.tasks import ReportView

__all__ = ["routes"]

api = Endpoints(tag="tasks")


#: A coordinate as the client sent it. Documented as a number, but taken as any JSON value so that the
#: domain's ``check_location`` answers a string, a boolean or null too: docs/tasks.md promises
#: ``invalid_location`` for a location "out of range or not a number" (it was ``invalid_body`` naming
#: ``location.lat.float``, the schema's inner union branch).
Coordinate = Annotated[Any, WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "integer"}], "title": "Coordinate"})]


class LocationIn(BodyModel):
    #: WGS-84 degrees; range-checked by the domain (``invalid_location``).
    lat: Coordinate
    #: WGS-84 degrees, -180 to 180 (lat: -90 to 90)
    lon: Coordinate


class NewReport(BodyModel):
    #: The grid-level position filing the report; the grid is taken from it.
    as_position: Id
    client_msg_id: ClientMsgId
    category: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    #: what the reporter saw (not empty)
    text: Annotated[str, StringConstraints(max_length=5000)]
    #: where: lat, lon in WGS-84 degrees
    location: LocationIn
    #: sha256 hex digests of photos uploaded first (POST /api/v1/uploads).
    photos: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=9
    )
    #: The grid cannot handle it: route one level up at once.
    beyond_capacity: bool = False


@api.route("POST", "/api/v1/reports", {200: ReportView, 201: ReportView}, body=NewReport, errors=(404, 429))
async def file_report(request: Request) -> Response:
    """File a report: acknowledged after the report and its task commit (201; 200 for a retry)."""
    s, claims = await current_person(request)
    b = await json_body(request, NewReport)
    check_send_rate(s, claims.person_id, "reports")
    filing = Filing(b.client_msg_id, b.category, b.text, b.location.lat, b.location.lon, b.photos, b.beyond_capacity)
    report, duplicate = await s.reports.file(claims.person_id, b.as_position, filing)
    return created(ReportView, report, duplicate=duplicate)


@api.route("GET", "/api/v1/reports/{report_id:int}", {200: ReportView})
async def get_report(request: Request) -> Response:
    """A report, for its reporter and everyone involved in its task."""
    s, claims = await current_person(request)
    return reply(ReportView, await s.reports.get(claims.person_id, int(request.path_params["report_id"])))


routes = api.routes
