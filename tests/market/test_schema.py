"""A bounty's terms are defined once (market/terms.py): the SQL table, the API's request, patch and response
models, the OpenAPI document and the CLI's spec file all agree with that definition."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from sqlalchemy import JSON, Float, Integer, String, Text
from typer.testing import CliRunner

from loopylab.market.cli import register
from loopylab.market.db import Bounty, Wei
from loopylab.market.models import BountyOut, BountyPatch
from loopylab.market.terms import SPEC_FIELDS, BountyTerms, load_spec
from loopylab.world.config import ConfigError

TERMS = list(BountyTerms.model_fields)
SERVER_COLUMNS = ["id", "requester", "state", "created_at", "funded_wei", "escrow_address", "refund_after"]
COUNTED = ["slots_taken", "slots_free", "approved", "paid_wei", "owed_wei", "escrow_wei"]  # from claims and payouts
# the JSON keys of a bounty, in the order the API has always sent them
BOUNTY_KEYS = [
    "id",
    "requester",
    "title",
    "description",
    "task_spec",
    "acceptance",
    "slots",
    "reward_wei",
    "deadline",
    "auto_approve_s",
    "claim_ttl_s",
    "state",
    "created_at",
    "slots_taken",
    "slots_free",
    "approved",
    "funded_wei",
    "paid_wei",
    "owed_wei",
    "escrow_wei",
    "escrow_address",
    "refund_after",
]
SQL_TYPE = {str: (String, Text, Wei), int: (Integer,), float: (Float,), dict: (JSON,), list: (JSON,)}
DOCS = Path(__file__).parents[2] / "docs" / "market.md"


def _max_length(field) -> int | None:
    return next((m.max_length for m in field.metadata if getattr(m, "max_length", None) is not None), None)


def test_sql_table_holds_the_terms_and_the_server_fields():
    columns = Bounty.__table__.columns
    assert sorted(columns.keys()) == sorted(TERMS + SERVER_COLUMNS)
    for name, field in BountyTerms.model_fields.items():
        column = columns[name]
        python_type = getattr(field.annotation, "__origin__", field.annotation)
        assert isinstance(column.type, SQL_TYPE[python_type]), f"{name}: {column.type!r} does not hold {python_type}"
        width = getattr(column.type, "length", None)  # VARCHAR(n); TEXT, JSON and numbers have none
        if width is not None:  # holds every value the terms accept
            limit = _max_length(field)
            assert limit is not None and width >= limit, f"{name}: the column holds {width}, the terms allow {limit}"


def test_request_patch_and_response_models_are_built_from_the_terms():
    terms_schema = BountyTerms.model_json_schema()["properties"]
    patch_schema = BountyPatch.model_json_schema()["properties"]
    assert list(patch_schema) == TERMS
    for name, prop in patch_schema.items():
        assert BountyPatch.model_fields[name].default is None
        branch, null = prop["anyOf"]
        assert null == {"type": "null"}
        same = {k: v for k, v in terms_schema[name].items() if k not in ("default", "title", "description")}
        assert branch == same, f"{name}: the patch checks {branch}, the terms {same}"
    assert list(BountyOut.model_fields) == BOUNTY_KEYS
    assert set(BOUNTY_KEYS) == set(TERMS) | set(SERVER_COLUMNS) | set(COUNTED)  # the row, plus the claim counts
    for name in TERMS:
        assert BountyOut.model_fields[name].annotation == BountyTerms.model_fields[name].annotation


def test_openapi_lists_typed_responses(world):
    doc = world.http.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]

    def answer(path, method):
        op = doc["paths"][path][method]
        ok = next(code for code in op["responses"] if code.startswith("2"))
        return op["responses"][ok]["content"]["application/json"]["schema"]

    bounty = {"$ref": "#/components/schemas/BountyOut"}
    assert answer("/bounties", "post") == bounty
    assert answer("/bounties", "get") == {
        "type": "array",
        "items": bounty,
        "title": "Response List Bounties Bounties Get",
    }
    for method in ("get", "patch", "delete"):
        assert answer("/bounties/{bounty_id}", method) == bounty
    for action in ("fund", "refund"):
        assert answer(f"/bounties/{{bounty_id}}/{action}", "post") == bounty
    assert answer("/bounties/{bounty_id}/funding", "get") == {"$ref": "#/components/schemas/FundingOut"}
    assert answer("/bounties/{bounty_id}/claims", "post") == {"$ref": "#/components/schemas/ClaimOut"}
    assert answer("/bounties/{bounty_id}/submissions", "get")["items"] == {"$ref": "#/components/schemas/SubmissionOut"}
    assert schemas["BountyOut"]["required"] == BOUNTY_KEYS
    assert list(schemas["BountyOut"]["properties"]) == BOUNTY_KEYS
    body = doc["paths"]["/bounties"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/BountyTerms"}
    assert schemas["BountyTerms"]["additionalProperties"] is False
    # every JSON answer of the API is typed, not an empty schema
    for path, ops in doc["paths"].items():
        for method in ops:
            if (path, method) != ("/blobs/{sha256}", "get"):
                assert answer(path, method), f"{method.upper()} {path} has no response schema"


def test_a_bounty_answers_with_the_schema_keys_and_patches_by_the_terms(world):
    requester = world.user(eth=1)
    from loopylab.market.sample import standard_bounty

    draft = requester.post_bounty(**standard_bounty(reward_wei=10**15))
    assert list(draft) == BOUNTY_KEYS and draft["reward_wei"] == str(10**15)
    patched = requester.request(
        "PATCH", f"/bounties/{draft['id']}", json={"title": "Slide distance", "reward_wei": "7"}
    )
    assert (patched["title"], patched["reward_wei"], patched["slots"]) == ("Slide distance", "7", draft["slots"])
    assert patched["description"] == draft["description"]  # untouched terms stay
    r = world.http.patch(f"/bounties/{draft['id']}", json={"titel": "typo"}, headers=requester._headers())
    assert r.status_code == 422 and "titel" in r.json()["detail"]
    assert list(world.http.get("/bounties").json()[0]) == BOUNTY_KEYS


def _documented_spec() -> str:
    text = DOCS.read_text()
    return re.search(r"A bounty spec \(`--spec bounty.toml`\):\n\n```toml\n(.*?)```", text, re.DOTALL).group(1)


def test_the_documented_spec_file_loads(tmp_path):
    path = tmp_path / "bounty.toml"
    path.write_text(_documented_spec())
    spec = load_spec(path)
    assert set(spec) == set(SPEC_FIELDS) <= set(TERMS)
    assert spec["task_spec"]["topics"] == ["wrist/wrench", "arm/joint_state"]
    assert [c["check"] for c in spec["acceptance"]] == ["range", "monotonic", "rate", "notebook_range"]


@pytest.mark.parametrize(
    "text, words",
    [
        ('descripton = "typo"\n', ["unknown keys ['descripton']"]),
        ('title = "set it with --title"\n', ["unknown keys ['title']"]),
        ('acceptance = "range"\n', ["acceptance", "valid list"]),
        ('description = "unclosed\n', ["not valid TOML"]),
    ],
)
def test_a_bad_spec_file_is_one_clear_error(tmp_path, text, words):
    path = tmp_path / "bounty.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_spec(path)
    assert str(e.value).startswith(f"{path}: ") and all(w in str(e.value) for w in words), str(e.value)


def test_the_cli_refuses_a_spec_with_an_unknown_key_before_signing_in(tmp_path):
    app = typer.Typer()
    register(app)
    path = tmp_path / "bounty.toml"
    path.write_text('reward = "0.01"\n' + _documented_spec())
    r = CliRunner().invoke(
        app,
        [
            "bounty",
            "post",
            "--title",
            "t",
            "--reward",
            "0.01",
            "--spec",
            str(path),
            "--url",
            "http://127.0.0.1:9",
            "--key",
            str(tmp_path / "no-key"),
        ],
    )
    assert r.exit_code == 2, r.output
    assert str(path) in r.output and "unknown keys ['reward']" in r.output
