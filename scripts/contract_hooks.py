"""schemathesis hooks for scripts/contract.sh.

An `Idempotency-Key` names one request: the same key with a different request is refused with
422 `idempotency_key_reused`, as the documents say. A schema cannot say "a new key for a new
request", so schemathesis, drawing keys from a small pool, sends valid keys with new bodies and
its positive-data check reads the 422 as valid data refused. This hook plays the client the
documents ask for: a valid key is tied to the body it comes with (a digest of the body is
appended), so repeats of one request still share a key and are replayed, and a different
request never reuses one. Invalid keys (negative cases) are left as they are. A client retries a
request with its key, but does not send it again after deleting what it created (the replay
would name the deleted record): a key also carries how many deletes this run has sent.

A payment or an enrolment names a member (`memberId`), refused with 409 unless the service has
heard of that member from its events; a schema cannot name an existing record, so a valid
`memberId` is set to the member contract.sh created for the run (KNOWN_MEMBER), and what follows
a created payment or enrolment is reached.

A seed's replace (`PUT /Member/{id}`, `PUT /api/Product/{id}`) may carry the record's `id` in its body, which must be the
id in the path (400 `id_mismatch` otherwise, as the seed answers); a schema cannot tie a body
member to a path parameter either, so a valid body `id` is set to the path's.
"""

import hashlib
import json
import os
import re

import schemathesis

HEADER = "Idempotency-Key"
VALID = re.compile(r"^[!-~](?:[ -~]{0,253}[!-~])?$")


UUID = re.compile(r"^[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}$")

deletes = 0


@schemathesis.hook
def before_call(context, case, kwargs):
    global deletes
    if case.method.upper() == "DELETE":
        deletes += 1
    same_id_as_path(case)
    known_member(case)
    headers = case.headers or {}
    key = headers.get(HEADER)
    if not isinstance(key, str) or not VALID.match(key):
        return
    body = json.dumps(case.body, sort_keys=True, default=str).encode()
    digest = hashlib.sha256(body).hexdigest()[:16]
    headers[HEADER] = f"{key[:230]}.{digest}.{deletes}"


def same_id_as_path(case):
    body = case.body
    path_id = (case.path_parameters or {}).get("id")
    if case.method.upper() != "PUT":
        return
    if not isinstance(body, dict) or not isinstance(body.get("id"), str) or not path_id:
        return
    if UUID.match(body["id"]) and isinstance(path_id, str) and UUID.match(path_id):
        body["id"] = path_id


MEMBER_BODIES = re.compile(r"^(/Payment|/api/payments/manual|/api/classes/\{id\}/enrollments)")


def known_member(case):
    member = os.environ.get("KNOWN_MEMBER")
    body = case.body
    if not member or not isinstance(body, dict) or not MEMBER_BODIES.match(case.operation.path):
        return
    if isinstance(body.get("memberId"), str) and UUID.match(body["memberId"]):
        body["memberId"] = member
