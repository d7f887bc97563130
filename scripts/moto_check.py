#!/usr/bin/env python3
"""Verify a moto server prepared by scripts/moto_setup.py (useful when debugging CI).

Usage (with the venv's python, e.g. through `scripts/moto.sh check ...`):

    scripts/moto_check.py --config setup.json      # the JSON printed by moto_setup.py
    scripts/moto_setup.py ... | scripts/moto_check.py --config -

Required checks (exit 1 if any fails):
  a. the user's credentials can AssumeRole with the right ExternalId, and the
     temporary credentials can GetObject PREFIX/hello.txt;
  b. AssumeRole with a wrong ExternalId is AccessDenied;
  c. the role's credentials cannot GetObject outside.txt (AccessDenied).
Extra checks (also counted): the role can ListObjectsV2, can Put+Delete under
the prefix, cannot PutObject outside it; unknown credentials are rejected.
Informational (not counted; moto does not enforce these): AssumeRole with no
ExternalId at all.

Ends with a line "N passed, N failed".
"""

import argparse
import json
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

CFG = Config(s3={"addressing_style": "path"}, proxies={}, retries={"max_attempts": 1})


def client(service, cfg, key_id, secret, token=None):
    return boto3.client(
        service,
        endpoint_url=cfg["endpoint"],
        region_name=cfg.get("region", "us-east-1"),
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=CFG,
    )


def err_code(e: ClientError) -> str:
    return e.response.get("Error", {}).get("Code", "?")


class Checker:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def ok(self, name, detail=""):
        self.passed += 1
        print(f"PASS {name}{': ' + detail if detail else ''}")

    def fail(self, name, detail):
        self.failed += 1
        print(f"FAIL {name}: {detail}")

    def expect_denied(self, name, fn, codes=("AccessDenied",)):
        try:
            fn()
        except ClientError as e:
            if err_code(e) in codes:
                self.ok(name, err_code(e))
            else:
                self.fail(name, f"expected {'/'.join(codes)}, got {err_code(e)}: {e}")
        except Exception as e:  # noqa: BLE001 - report anything
            self.fail(name, f"expected {'/'.join(codes)}, got {type(e).__name__}: {e}")
        else:
            self.fail(name, f"expected {'/'.join(codes)}, but the call succeeded")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="JSON file from moto_setup.py, or - for stdin")
    ap.add_argument("--endpoint", help="override the endpoint in the config")
    args = ap.parse_args()

    if args.config == "-":
        cfg = json.load(sys.stdin)
    else:
        with open(args.config, encoding="utf-8") as f:
            cfg = json.load(f)
    if args.endpoint:
        cfg["endpoint"] = args.endpoint.rstrip("/")

    bucket, prefix = cfg["bucket"], cfg["prefix"]
    user_sts = client("sts", cfg, cfg["user_access_key_id"], cfg["user_secret_access_key"])
    c = Checker()

    # a. right ExternalId -> temporary credentials that can read PREFIX/hello.txt
    role_s3 = None
    try:
        creds = user_sts.assume_role(
            RoleArn=cfg["role_arn"], RoleSessionName="s3mount-check", ExternalId=cfg["external_id"]
        )["Credentials"]
        c.ok("a1 AssumeRole with the right ExternalId", creds["AccessKeyId"])
        role_s3 = client("s3", cfg, creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
    except Exception as e:  # noqa: BLE001
        c.fail("a1 AssumeRole with the right ExternalId", repr(e))

    if role_s3 is not None:
        try:
            body = role_s3.get_object(Bucket=bucket, Key=f"{prefix}/hello.txt")["Body"].read()
            if body == b"hello from moto\n":
                c.ok("a2 role GetObject PREFIX/hello.txt", repr(body))
            else:
                c.fail("a2 role GetObject PREFIX/hello.txt", f"unexpected body {body!r}")
        except Exception as e:  # noqa: BLE001
            c.fail("a2 role GetObject PREFIX/hello.txt", repr(e))

    # b. wrong ExternalId -> AccessDenied
    c.expect_denied(
        "b  AssumeRole with a wrong ExternalId",
        lambda: user_sts.assume_role(
            RoleArn=cfg["role_arn"], RoleSessionName="s3mount-check", ExternalId=cfg["external_id"] + "-wrong"
        ),
    )

    if role_s3 is not None:
        # c. outside the prefix -> AccessDenied
        c.expect_denied("c  role GetObject outside.txt", lambda: role_s3.get_object(Bucket=bucket, Key="outside.txt"))

        # extras
        try:
            keys = [o["Key"] for o in role_s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/").get("Contents", [])]
            if f"{prefix}/hello.txt" in keys:
                c.ok("x1 role ListObjectsV2 prefix", str(keys))
            else:
                c.fail("x1 role ListObjectsV2 prefix", f"hello.txt missing from {keys}")
        except Exception as e:  # noqa: BLE001
            c.fail("x1 role ListObjectsV2 prefix", repr(e))
        try:
            k = f"{prefix}/moto-check.tmp"
            role_s3.put_object(Bucket=bucket, Key=k, Body=b"x")
            role_s3.delete_object(Bucket=bucket, Key=k)
            c.ok("x2 role Put+Delete under the prefix")
        except Exception as e:  # noqa: BLE001
            c.fail("x2 role Put+Delete under the prefix", repr(e))
        c.expect_denied(
            "x3 role PutObject outside the prefix",
            lambda: role_s3.put_object(Bucket=bucket, Key="moto-check-outside.tmp", Body=b"x"),
        )

    bogus = client("s3", cfg, "AKIANOTAREALKEY00000", "not-a-secret")
    c.expect_denied(
        "x4 unknown credentials rejected",
        lambda: bogus.get_object(Bucket=bucket, Key=f"{prefix}/hello.txt"),
        codes=("InvalidAccessKeyId", "AccessDenied", "InvalidClientTokenId", "SignatureDoesNotMatch"),
    )

    # informational: moto does not enforce a *missing* ExternalId
    try:
        user_sts.assume_role(RoleArn=cfg["role_arn"], RoleSessionName="s3mount-check")
        print("INFO AssumeRole without ExternalId succeeded (moto does not enforce a missing ExternalId; AWS would deny)")
    except ClientError as e:
        print(f"INFO AssumeRole without ExternalId denied: {err_code(e)}")

    print(f"{c.passed} passed, {c.failed} failed")
    return 0 if c.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
