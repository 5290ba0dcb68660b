"""Response bodies of the API (they make the OpenAPI document at /docs precise)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class Accepted(BaseModel):
    id: str
    job_id: str | None = None
    avatar_id: str | None = None
    status_url: str


class Job(BaseModel):
    id: str
    kind: str
    state: str
    stage: str
    progress: float
    error: str | None
    created: float
    started: float | None
    finished: float | None
    attempts: int
    cancel_requested: bool
    avatar_id: str | None
    waiting_for: str | None
    result_url: str | None


class Avatar(BaseModel):
    id: str
    name: str
    source_kind: str
    state: str
    stage: str
    progress: float
    error: str | None
    created: float
    job_id: str
    info: dict[str, Any] | None


class Deleted(BaseModel):
    id: str
    deleted: bool


def job_out(j: dict) -> Job:
    done = j["state"] == "done" and bool((j.get("result") or {}).get("output"))
    return Job(id=j["id"], kind=j["kind"], state=j["state"], stage=j["stage"], progress=j["progress"],
               error=j["error"], created=j["created"], started=j["started"], finished=j["finished"],
               attempts=j["attempts"], cancel_requested=j["cancel_requested"], avatar_id=j["avatar_id"],
               waiting_for=j["after"] if j["state"] == "queued" else None,
               result_url=f"/jobs/{j['id']}/result" if done else None)
