"""schemathesis hooks for scripts/contract.sh.

An `Idempotency-Key` names one request: the same key with a different request is refused with
422 `idempotency_key_reused`, as the documents say. A schema cannot say "a new key for a new
request", so schemathesis, drawing keys from a small pool, sends valid keys with new bodies and
its positive-data check reads the 422 as valid data refused. This hook plays the client the
documents ask for: a valid key is tied to the body it comes with (a digest of the body is
appended), so repeats of one request still share a key and are replayed, and a different
request never reuses one. Invalid keys (negative cases) are left as they are.
"""

import hashlib
import json
import re

import schemathesis

HEADER = "Idempotency-Key"
VALID = re.compile(r"^[!-~](?:[ -~]{0,253}[!-~])?$")


@schemathesis.hook
def before_call(context, case, kwargs):
    headers = case.headers or {}
    key = headers.get(HEADER)
    if not isinstance(key, str) or not VALID.match(key):
        return
    body = json.dumps(case.body, sort_keys=True, default=str).encode()
    digest = hashlib.sha256(body).hexdigest()[:16]
    headers[HEADER] = f"{key[:238]}.{digest}"
