"""``GET /v1/catalogue``: the items a department may put on its notices."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import Reader, ReadSession
from api.routers.notices import ERRORS
from notices import catalogue, views
from notices.schemas import CatalogueOut

router = APIRouter(prefix="/v1/catalogue", tags=["catalogue"])


@router.get("", response_model=CatalogueOut, responses=ERRORS)
def list_catalogue(who: Reader, session: ReadSession) -> CatalogueOut:
    """Active items this department may bill for, by code."""
    items = catalogue.usable_items(session, who.department_kind, who.department_name)
    return views.catalogue_out(items)
