"""A SensorThings-style read API (OGC STA v1.1 shapes) over the environment and equipment records, per tenant.

Things, Datastreams and Observations with `@iot.id`, `@iot.selfLink` and navigation links; `$top`, `$skip`,
`$count`, `$orderby=phenomenonTime [asc|desc]` and a `$filter` subset on Observations (see
`adapters/sensorthings.py`). Every key reads only its organization's instances' data; admins read all. Entity
ids are strings, so single entities are addressed as `Things('id')` (the quotes may be omitted).
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from adapters import sensorthings as sta
from adapters.models import CanonicalRecordRow
from api.deps import SessionDep, require_scopes
from api.errors import problem_responses
from certificates.service import Actor
from organizations.models import Scope as KeyScope

PREFIX = "/api/v1/sta/v1.1"
router = APIRouter(prefix=PREFIX, tags=["sensorthings"])

ReaderDep = Annotated[Actor, Depends(require_scopes(KeyScope.certificates_read))]
Top = Annotated[int, Query(alias="$top", ge=0, le=sta.MAX_TOP, description="Page size")]
Skip = Annotated[int, Query(alias="$skip", ge=0, le=10_000_000)]
CountOption = Annotated[bool, Query(alias="$count", description="Include @iot.count")]
FilterOption = Annotated[
    str | None,
    Query(
        alias="$filter",
        max_length=500,
        description="phenomenonTime|result eq/ne/gt/ge/lt/le value, joined by 'and'",
    ),
]
OrderBy = Annotated[
    str | None,
    Query(alias="$orderby", pattern=r"^phenomenonTime( (asc|desc))?$", description="phenomenonTime asc|desc"),
]
Entity = dict[str, Any]


def _scope(actor: Actor) -> sta.Scope:
    return sta.Scope(organization_id=actor.organization.id, is_admin=actor.is_admin)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + PREFIX


def _ref(entity_id: str) -> str:
    return entity_id.strip().strip("'")


def _thing(base: str, thing: sta.ThingView) -> Entity:
    link = f"{base}/Things('{thing.id}')"
    return {
        "@iot.id": thing.id,
        "@iot.selfLink": link,
        "name": thing.name,
        "description": thing.description,
        "properties": {**thing.properties, "adapterInstance": thing.instance_id, "kind": thing.kind},
        "Datastreams@iot.navigationLink": f"{link}/Datastreams",
    }


def _datastream(base: str, datastream: sta.DatastreamView) -> Entity:
    link = f"{base}/Datastreams('{datastream.id}')"
    unit = (
        {"name": datastream.unit, "symbol": datastream.unit, "definition": f"ucum:{datastream.unit}"}
        if datastream.unit
        else {"name": None, "symbol": None, "definition": None}
    )
    return {
        "@iot.id": datastream.id,
        "@iot.selfLink": link,
        "name": datastream.name,
        "description": f"{datastream.observed_property} of {datastream.name}",
        "observationType": datastream.observation_type,
        "unitOfMeasurement": unit,
        "ObservedProperty": {"name": datastream.observed_property},
        "Thing@iot.navigationLink": f"{base}/Things('{datastream.thing_id}')",
        "Observations@iot.navigationLink": f"{link}/Observations",
    }


def _observation(base: str, row: CanonicalRecordRow) -> Entity:
    record = row.record
    phenomenon = record.get("observed_at") or (row.source_time.isoformat() if row.source_time else None)
    result: Any = record["value"] if row.kind == "environment-reading" else record["status"]
    return {
        "@iot.id": row.id,
        "@iot.selfLink": f"{base}/Observations({row.id})",
        "phenomenonTime": phenomenon,
        "resultTime": row.recorded_at.isoformat(),
        "result": result,  # decimals as text: the digits the source sent are kept
        "parameters": {k: record[k] for k in ("source_status", "room") if record.get(k)},
        "Datastream@iot.navigationLink": f"{base}/Datastreams('{sta.datastream_of_row(row)}')",
    }


def _page(items: list[Entity], *, count: int | None, next_link: str | None) -> Entity:
    body: Entity = {}
    if count is not None:
        body["@iot.count"] = count
    body["value"] = items
    if next_link:
        body["@iot.nextLink"] = next_link
    return body


def _next(request: Request, *, skip: int, top: int, total: int) -> str | None:
    if skip + top >= total or top == 0:
        return None
    return str(request.url.include_query_params(**{"$skip": skip + top, "$top": top}))


@router.get("", summary="SensorThings service root", responses=problem_responses(401))
def service_root(request: Request, _actor: ReaderDep) -> Entity:
    """The entity sets this read API serves."""
    base = _base(request)
    return {
        "value": [{"name": name, "url": f"{base}/{name}"} for name in ("Things", "Datastreams", "Observations")],
        "serverSettings": {"conformance": ["http://www.opengis.net/spec/iot_sensing/1.1/req/request-data"]},
    }


@router.get("/Things", summary="Sensors and instruments of your adapter instances", responses=problem_responses(401))
def list_things(
    request: Request,
    session: SessionDep,
    actor: ReaderDep,
    top: Top = sta.DEFAULT_TOP,
    skip: Skip = 0,
    count: CountOption = False,
) -> Entity:
    """Things visible to the key's organization (all for admins)."""
    things = sta.things_of(session, scope=_scope(actor))
    base = _base(request)
    page = [_thing(base, thing) for thing in things[skip : skip + top]]
    return _page(
        page, count=len(things) if count else None, next_link=_next(request, skip=skip, top=top, total=len(things))
    )


@router.get("/Things({thing_id})", summary="One Thing", responses=problem_responses(401, 404))
def read_thing(request: Request, session: SessionDep, actor: ReaderDep, thing_id: str) -> Entity:
    """A Thing by id (404 when unknown or another tenant's)."""
    thing = sta.get_thing_or_raise(session, scope=_scope(actor), thing_id=_ref(thing_id))
    return _thing(_base(request), thing)


@router.get("/Things({thing_id})/Datastreams", summary="Datastreams of a Thing", responses=problem_responses(401, 404))
def list_thing_datastreams(request: Request, session: SessionDep, actor: ReaderDep, thing_id: str) -> Entity:
    """The Thing's datastreams."""
    thing = sta.get_thing_or_raise(session, scope=_scope(actor), thing_id=_ref(thing_id))
    base = _base(request)
    return _page([_datastream(base, d) for d in thing.datastreams.values()], count=None, next_link=None)


@router.get("/Datastreams", summary="All visible Datastreams", responses=problem_responses(401))
def list_datastreams(
    request: Request,
    session: SessionDep,
    actor: ReaderDep,
    top: Top = sta.DEFAULT_TOP,
    skip: Skip = 0,
    count: CountOption = False,
) -> Entity:
    """Datastreams of every visible Thing."""
    streams = [d for thing in sta.things_of(session, scope=_scope(actor)) for d in thing.datastreams.values()]
    base = _base(request)
    page = [_datastream(base, d) for d in streams[skip : skip + top]]
    return _page(
        page, count=len(streams) if count else None, next_link=_next(request, skip=skip, top=top, total=len(streams))
    )


@router.get("/Datastreams({datastream_id})", summary="One Datastream", responses=problem_responses(401, 404))
def read_datastream(request: Request, session: SessionDep, actor: ReaderDep, datastream_id: str) -> Entity:
    """A Datastream by id."""
    datastream = sta.get_datastream_or_raise(session, scope=_scope(actor), datastream_id=_ref(datastream_id))
    return _datastream(_base(request), datastream)


@router.get(
    "/Datastreams({datastream_id})/Observations",
    summary="Observations of a Datastream",
    responses=problem_responses(401, 404, 422),
)
def list_datastream_observations(
    request: Request,
    session: SessionDep,
    actor: ReaderDep,
    datastream_id: str,
    top: Top = sta.DEFAULT_TOP,
    skip: Skip = 0,
    count: CountOption = False,
    filter_text: FilterOption = None,
    orderby: OrderBy = None,
) -> Entity:
    """Observations of one Datastream, by phenomenon time."""
    scope = _scope(actor)
    datastream = sta.get_datastream_or_raise(session, scope=scope, datastream_id=_ref(datastream_id))
    return _observations(request, session, scope, datastream, top, skip, count, filter_text, orderby)


@router.get("/Observations", summary="All visible Observations", responses=problem_responses(401, 422))
def list_observations(
    request: Request,
    session: SessionDep,
    actor: ReaderDep,
    top: Top = sta.DEFAULT_TOP,
    skip: Skip = 0,
    count: CountOption = False,
    filter_text: FilterOption = None,
    orderby: OrderBy = None,
) -> Entity:
    """Observations of every visible Datastream."""
    return _observations(request, session, _scope(actor), None, top, skip, count, filter_text, orderby)


@router.get("/Observations({observation_id})", summary="One Observation", responses=problem_responses(401, 404))
def read_observation(request: Request, session: SessionDep, actor: ReaderDep, observation_id: int) -> Entity:
    """An Observation by id."""
    row = sta.get_observation_or_raise(session, scope=_scope(actor), observation_id=observation_id)
    return _observation(_base(request), row)


def _observations(
    request: Request,
    session: Any,
    scope: sta.Scope,
    datastream: sta.DatastreamView | None,
    top: int,
    skip: int,
    count: bool,
    filter_text: str | None,
    orderby: str | None,
) -> Entity:
    rows, total = sta.observations_of(
        session,
        scope=scope,
        datastream=datastream,
        filter_text=filter_text,
        descending=bool(orderby and orderby.endswith("desc")),
        top=top,
        skip=skip,
    )
    base = _base(request)
    return _page(
        [_observation(base, row) for row in rows],
        count=total if count else None,
        next_link=_next(request, skip=skip, top=top, total=total),
    )
