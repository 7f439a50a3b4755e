# moto's server, with two of its answers made AWS's (checked against moto 5.2.1 and 5.2.5):
# - the signature check rebuilds the canonical query string from a URL whose query values it
#   has already percent-decoded, so any signed request whose query holds a `/` (a
#   ListObjectsV2 with `prefix=production/`) fails with SignatureDoesNotMatch, from boto3 as
#   from aws-sdk-rust: the values are encoded again as signature version 4 does;
# - GetBucketVersioning answers `<GetBucketVersioningResponse>` where S3 answers
#   `<VersioningConfiguration>` (boto3 does not look at the root element; aws-sdk-rust does).
# Nothing else is changed. Used by tests/common/moto.rs; run with moto_server's own arguments.
import sys
import urllib.parse

from moto.iam import access_control

_init = access_control.IAMRequestBase.__init__


def _quote(text):
    return urllib.parse.quote(urllib.parse.unquote(text), safe="-_.~")


def _init_encoded(self, account_id, method, path, data, body, headers, action):
    base, question, query = path.partition("?")
    if question:
        pairs = []
        for pair in query.split("&"):
            key, equals, value = pair.partition("=")
            pairs.append(_quote(key) + (equals + _quote(value) if equals else ""))
        path = base + "?" + "&".join(pairs)
    _init(self, account_id, method, path, data, body, headers, action)


access_control.IAMRequestBase.__init__ = _init_encoded

from moto.s3 import responses as s3_responses  # noqa: E402


def _get_bucket_versioning(self):
    status = self.backend.get_bucket_versioning(self.bucket_name)
    self.data["Action"] = "GetBucketVersioning"
    inner = f"<Status>{status}</Status>" if status else ""
    return (
        200,
        {"Content-Type": "application/xml"},
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"{inner}</VersioningConfiguration>",
    )


s3_responses.S3Response.get_bucket_versioning = _get_bucket_versioning

from moto.server import main  # noqa: E402

sys.exit(main())
