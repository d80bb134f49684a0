"""A bounty's terms, defined once: what the requester asks for (title, task, acceptance checks) and what they pay
(slots x reward, deadline, review and claim delays).

`BountyTerms` is the one definition. The API takes it as the body of `POST /bounties` and builds its patch and
response models from it (market/models.py); the service validates and stores it; the CLI's spec file holds a
part of it (`load_spec`); a test holds the `bounties` table (market/db.py) to its fields. Amounts of wei are
decimal strings, as on the wire and in the table: JSON numbers lose digits past 2**53.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from loopylab.world.config import ConfigError, check_keys, read_document

WEI_PATTERN = r"^[1-9][0-9]{0,40}$"  # a positive whole number of wei, at most 41 digits


class Strict(BaseModel):
    """A body that names a key the model does not know is refused (422), never silently trimmed; no float is
    NaN or infinite."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class BountyTerms(Strict):
    """The terms of one bounty; they freeze when the bounty is funded."""

    title: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=20_000)
    task_spec: dict[str, Any] = Field(
        default_factory=dict,
        description="what to record: {topics: [...], notebook: bool, protocol: str, schema: {...}}",
    )
    acceptance: list[dict[str, Any]] = Field(
        default_factory=list,
        max_length=50,
        description="plausibility checks: {check: range|monotonic|rate|notebook_range|min_messages, ...}",
    )
    slots: int = Field(ge=1, le=10_000, description="number of submissions wanted")
    reward_wei: str = Field(pattern=WEI_PATTERN, max_length=41, description="reward per accepted submission, in wei")
    deadline: float = Field(allow_inf_nan=False, description="unix time after which no claims are taken")
    auto_approve_s: float = Field(3 * 86400, ge=0, le=30 * 86400, allow_inf_nan=False)
    claim_ttl_s: float = Field(3600, ge=1, le=30 * 86400, allow_inf_nan=False)

    @property
    def reward(self) -> int:
        return int(self.reward_wei)

    def columns(self) -> dict[str, Any]:
        """The terms as the `bounties` table's columns take them (the reward as an integer)."""
        return {**self.model_dump(), "reward_wei": self.reward}

    @classmethod
    def of(cls, row: Any) -> BountyTerms:
        """The terms of a stored bounty (a `db.Bounty` row), unvalidated: the row passed validation once."""
        values = {name: getattr(row, name) for name in cls.model_fields}
        return cls.model_construct(**{**values, "reward_wei": str(row.reward_wei)})


def derive(name: str, fields: tuple[str, ...] | None = None, optional: bool = False, doc: str = "") -> type[Strict]:
    """A model with `fields` of BountyTerms (all of them by default), their types, limits and descriptions kept;
    `optional` makes each one default to None (a patch names only what changes)."""
    spec: dict[str, Any] = {}
    for field_name in fields or tuple(BountyTerms.model_fields):
        info = BountyTerms.model_fields[field_name]
        annotation: Any = info.annotation
        if optional:
            info = copy.copy(info)
            info.default, info.default_factory = None, None
            annotation = annotation | None
        spec[field_name] = (annotation, info)
    return create_model(name, __base__=Strict, __doc__=doc, **spec)


def first_error(e: ValidationError) -> str:
    """The first complaint of a validation error, as `where: what`."""
    err = e.errors()[0]
    return f"{'.'.join(map(str, err['loc']))}: {err['msg']}"


# ---------------------------------------------------------------------- the CLI's spec file

SPEC_FIELDS = ("description", "task_spec", "acceptance")  # too long for the command line; the rest are options
BountySpec = derive("BountySpec", SPEC_FIELDS, doc="The terms a bounty spec file (TOML) holds.")


def load_spec(path: str | Path) -> dict[str, Any]:
    """The terms a spec file sets (description, [task_spec], [[acceptance]]). A key that is not one of them, or
    a value the terms refuse, is a ConfigError that names the file and the key."""
    p = Path(path)
    data = read_document(p)
    check_keys(data, SPEC_FIELDS, str(p))
    try:
        return BountySpec.model_validate(data).model_dump(exclude_unset=True)
    except ValidationError as e:
        raise ConfigError(f"{p}: {first_error(e)}") from None
