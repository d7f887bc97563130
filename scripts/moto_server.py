"""scripts/moto_server.py - moto's server, with SigV4's canonical query string built as AWS
builds it. Started by scripts/moto.sh (arguments as for moto_server).

Why: moto checks a request's signature by recomputing it with botocore over the request URL
as werkzeug gives it back, whose query string is decoded ("prefix=team-a/"), and botocore
takes that query as already encoded. AWS URI-encodes every key and value ("prefix=team-a%2F"),
as every SDK signs it; so with authentication on, every request whose query holds a '/' (any
ListObjectsV2 with a delimiter or a prefix) failed with SignatureDoesNotMatch. Decoding and
then encoding each key and value gives the same string whether the URL arrived encoded or not.
"""

import sys
from urllib.parse import quote, unquote

import botocore.auth


def _canonical_query_string_url(self, parts):
    if not parts.query:
        return ""
    pairs = []
    for pair in parts.query.split("&"):
        key, _, value = pair.partition("=")
        pairs.append((quote(unquote(key), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


botocore.auth.SigV4Auth._canonical_query_string_url = _canonical_query_string_url

from moto.server import main  # noqa: E402  (after the patch, which it must see)

if __name__ == "__main__":
    sys.argv[0] = "moto_server"
    sys.exit(main())
