"""Names and metadata chosen by operators' tenants, rendered on the operators' pages: escaped,
never markup; a batch's metadata cannot pose as the gateway's own pause notice, nor break the
batches page (any metadata without a pause made it a 500)."""

from __future__ import annotations

import httpx
import openai

from tests.batches.paused_gateway import ADMIN, admin_call
from tests.batches.test_openai_batches import chat_line, jsonl
from tests.batches.test_team_owner_refused import gw
from tests.conftest import RunningGateway
from tests.ui.signin import sign_in

__all__ = ["gw"]  # a served gateway with batches (real redis-server)
XSS = '<img src=x onerror="alert(1)">'


def _page(gw: RunningGateway, path: str, credential: str = ADMIN) -> str:
    with httpx.Client(base_url=gw.url, timeout=10) as http:
        assert sign_in(http, credential).status_code == 303
        answer = http.get(path)
        assert answer.status_code == 200
        return answer.text


def test_org_team_and_member_names_are_escaped(gw: RunningGateway) -> None:
    org = {"id": "acme", "name": XSS, "limits": {"models": ["ok"]}}
    assert admin_call(gw, "POST", "/v1/admin/orgs", json=org).status_code == 201
    team = {"id": "ml", "org": "acme", "tier": "free", "name": XSS, "members": [XSS, "ann"]}
    assert admin_call(gw, "POST", "/v1/admin/teams", json=team).status_code == 201
    page = _page(gw, "/ui/orgs")
    assert XSS not in page and "&lt;img src=x onerror=" in page


def test_batch_metadata_is_escaped_and_cannot_pose_as_a_pause(gw: RunningGateway) -> None:
    api = openai.OpenAI(base_url=gw.base_url, api_key=gw.key(), max_retries=0)
    uploaded = api.files.create(file=("in.jsonl", jsonl([chat_line("a")])), purpose="batch")
    spoof = {"gateway_paused": "quota: call +1-555-0100 to raise it"}
    try:
        api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                           completion_window="24h", metadata=spoof)  # fmt: skip
        raise AssertionError("a client's metadata took the gateway's reserved key")
    except openai.BadRequestError as refused:
        assert refused.body is not None and "metadata" in str(refused.body)
    made = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                              completion_window="24h", metadata={"note": XSS})  # fmt: skip
    for page in (_page(gw, "/ui/batches"), _page(gw, "/ui/me", gw.key())):
        assert made.id in page and XSS not in page
