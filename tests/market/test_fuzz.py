"""schemathesis against the API's own OpenAPI document: whatever the fuzzer sends, signed in or not,
the server answers below 500 (every error is a 4xx with a message)."""

from __future__ import annotations

import itertools
import json
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from loopylab.market.sample import write_recording

EXAMPLES = 4  # per operation and mode: the file stays near 10 s on an idle 2-core machine


@pytest.fixture(scope="module")
def fuzz_world(base_chain, tmp_path_factory):
    from loopylab.market import migrate
    from loopylab.market.chain import Chain
    from tests.market.conftest import World, make_market, make_store

    tmp = tmp_path_factory.mktemp("fuzz")
    store, _ = make_store("sqlite", tmp)
    migrate.upgrade(store)
    chain = Chain(base_chain.w3, base_chain.operator, embedded=True)
    chain.lock = base_chain.lock
    chain.deploy_escrow()
    w = World(make_market(store, chain, tmp), chain)
    # a little real state, so ids 1 and 2 exist and deeper code paths run
    requester, alice = w.user(eth=10), w.user()
    b = w.funded_bounty(requester, reward_wei=10**15, slots=3)
    alice.register_rig()
    alice.submit_folder(alice.claim(b["id"])["id"], write_recording(tmp / "rec", seed=5))
    w.token = alice.token
    return w


def _has_inputs(operation) -> bool:
    """Whether a negative case can exist: the optional Authorization header is any string and a raw-bytes body any
    bytes, so neither alone is an input to break."""
    params = [
        p for p in operation.iter_parameters() if (p.location.value, p.name.lower()) != ("header", "authorization")
    ]
    return bool(params) or any(b.media_type != "application/octet-stream" for b in operation.body)


def test_no_server_errors(fuzz_world):
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_world.app)
    headers = {"Authorization": f"Bearer {fuzz_world.token}"}
    tried, statuses = 0, Counter()
    for result, mode in itertools.product(list(schema.get_all_operations()), GenerationMode):
        operation = result.ok()
        if mode is GenerationMode.NEGATIVE and not _has_inputs(operation):
            continue  # nothing to make invalid: hypothesis would search seconds per operation to say Unsatisfiable

        @given(case=operation.as_strategy(mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case):
            # logging out would end the fuzzer's own session: that one runs signed out
            response = case.call(headers=headers if operation.path != "/auth/logout" else {})
            statuses[response.status_code // 100] += 1
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
            )
            if response.status_code >= 400:
                body = json.loads(response.content)
                assert body.get("detail"), f"{case.method} {case.formatted_path}: an error must say what went wrong"

        try:
            fuzz()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # inputs none of which a negative case can break
            continue
        tried += 1
    assert tried >= 25 + 15  # every operation positive, those with inputs negative too
    assert statuses[2] > 15 and statuses[4] > 60, statuses  # valid requests got through, bad ones 4xx


def test_no_server_errors_in_stateful_sequences(fuzz_world):
    """schemathesis's stateful mode: call sequences chained by the links it infers from the document (a posted
    bounty's id into PATCH, funding, claims ...), signed in with a real SIWE session."""
    from hypothesis import settings as hsettings

    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_world.app)
    token, calls = fuzz_world.token, Counter()

    class Signed(schema.as_state_machine()):
        def get_call_kwargs(self, case):
            return {"headers": {"Authorization": f"Bearer {token}"}} if case.path != "/auth/logout" else {}

        def validate_response(self, response, case, additional_checks=(), **kw):
            calls[case.method, case.path] += 1
            assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text[:300]}"

    Signed.run(
        settings=hsettings(
            max_examples=12,
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
    )
    assert sum(calls.values()) > 30 and ("POST", "/bounties") in calls, calls
