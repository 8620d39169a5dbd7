"""HTTP routes of the party module, mounted at ``/v1/tenants/{tenant_id}/party``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from core.http import module_runtime
from core.tenancy import ModuleRuntime
from middle.party.service import CustomerDraft, CustomerView

party = module_runtime("party")


class IdNumberLookup(BaseModel):
    # A POST body, so ID numbers never appear in URLs or access logs.
    id_number: str = Field(min_length=15, max_length=21)


def router() -> APIRouter:
    api = APIRouter()

    @api.post("/customers", status_code=201)
    def register_customer(draft: CustomerDraft, response: Response, runtime: ModuleRuntime = Depends(party)) -> CustomerView:
        with runtime.tenant.unit_of_work() as uow:
            result = runtime.container.service(uow=uow).register(draft)
        if not result.created:
            response.status_code = 200
        return result.customer

    @api.get("/customers/{customer_no}")
    def get_customer(customer_no: str, runtime: ModuleRuntime = Depends(party)) -> CustomerView:
        with runtime.tenant.unit_of_work() as uow:
            return runtime.container.service(uow=uow).get(customer_no)

    @api.post("/customers/lookup")
    def lookup_customer(body: IdNumberLookup, runtime: ModuleRuntime = Depends(party)) -> CustomerView:
        from core.errors import NotFound

        with runtime.tenant.unit_of_work() as uow:
            found = runtime.container.service(uow=uow).find_by_id_number(body.id_number)
        if found is None:
            raise NotFound("no customer with this ID number")
        return found

    return api
