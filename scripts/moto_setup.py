#!/usr/bin/env python3
"""Prepare a running moto server for s3mount's AssumeRole / ExternalId tests.

Usage (with the venv's python, e.g. through `scripts/moto.sh setup ...`):

    scripts/moto_setup.py --endpoint http://127.0.0.1:5055 \
        --bucket B --prefix P --external-id X

Steps, against the moto server only (root credentials "test"/"test", us-east-1):
  1. turn auth off and POST /moto-api/reset (clean state, safe to rerun);
  2. create bucket B with objects `P/hello.txt` ("hello from moto\\n") and
     `outside.txt` ("outside\\n");
  3. create IAM user `s3mount-user` with an access key and an inline policy that
     allows only sts:AssumeRole on the role;
  4. create role `s3mount-role` trusted by exactly
     arn:aws:iam::123456789012:user/s3mount-user with the condition
     StringEquals {"sts:ExternalId": X}, and an inline policy allowing
     s3:ListBucket on the bucket and Get/Put/Delete/AbortMultipartUpload/
     ListMultipartUploadParts on B/P/*;
  5. turn auth on: POST /moto-api/reset-auth with body 0.

Prints one JSON object on stdout:
  {"endpoint", "bucket", "prefix", "external_id", "role_arn",
   "user_access_key_id", "user_secret_access_key", "region"}
"""

import argparse
import json
import sys
import urllib.request

import boto3
from botocore.config import Config

ACCOUNT_ID = "123456789012"
USER_NAME = "s3mount-user"
ROLE_NAME = "s3mount-role"
REGION = "us-east-1"


def moto_api(endpoint: str, path: str, body: bytes = b"") -> None:
    """POST to moto's control API (never through a proxy)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    # text/plain: with urllib's default form content type Flask swallows the body.
    req = urllib.request.Request(
        endpoint.rstrip("/") + path, data=body, method="POST", headers={"Content-Type": "text/plain"}
    )
    with opener.open(req, timeout=30) as resp:
        if resp.status != 200:
            raise RuntimeError(f"POST {path}: HTTP {resp.status}")


def client(service: str, endpoint: str):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        # Path-style addressing, no proxies, plain HTTP on loopback.
        config=Config(s3={"addressing_style": "path"}, proxies={}),
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoint", required=True, help="moto server URL, e.g. http://127.0.0.1:5055")
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--prefix", required=True, help="key prefix the role may use (without trailing /)")
    ap.add_argument("--external-id", required=True)
    ap.add_argument(
        "--policy-file",
        help="JSON file with the role's permissions policy (default: List/Get/Put/Delete under the prefix)",
    )
    ap.add_argument("--kms-key", action="store_true", help="also create a KMS key; its ARN is printed as kms_key_arn")
    args = ap.parse_args()

    endpoint = args.endpoint.rstrip("/")
    bucket = args.bucket
    prefix = args.prefix.strip("/")

    # Auth may still be on from a previous setup: switch it off before the reset
    # (a reset does not touch the auth setting), then clean all state.
    moto_api(endpoint, "/moto-api/reset-auth", b"inf")
    moto_api(endpoint, "/moto-api/reset")

    s3 = client("s3", endpoint)
    iam = client("iam", endpoint)

    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=f"{prefix}/hello.txt", Body=b"hello from moto\n")
    s3.put_object(Bucket=bucket, Key="outside.txt", Body=b"outside\n")

    user_arn = iam.create_user(UserName=USER_NAME)["User"]["Arn"]
    expected_user_arn = f"arn:aws:iam::{ACCOUNT_ID}:user/{USER_NAME}"
    if user_arn != expected_user_arn:
        print(f"moto_setup: warning: user ARN is {user_arn}, expected {expected_user_arn}", file=sys.stderr)
    key = iam.create_access_key(UserName=USER_NAME)["AccessKey"]

    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                # The exact user ARN: moto denies a user against a ":root" principal.
                "Principal": {"AWS": user_arn},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": args.external_id}},
            }
        ],
    }
    role_arn = iam.create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]

    user_policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": role_arn}],
    }
    iam.put_user_policy(UserName=USER_NAME, PolicyName="assume-s3mount-role", PolicyDocument=json.dumps(user_policy))

    role_policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}"},
            {
                "Effect": "Allow",
                "Action": [
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts",
                ],
                "Resource": f"arn:aws:s3:::{bucket}/{prefix}/*",
            },
        ],
    }
    kms_key_arn = None
    if args.kms_key:
        kms_key_arn = client("kms", endpoint).create_key(Description="s3mount test key")["KeyMetadata"]["Arn"]

    if args.policy_file:
        with open(args.policy_file, encoding="utf-8") as f:
            role_policy = json.load(f)
    iam.put_role_policy(RoleName=ROLE_NAME, PolicyName="s3mount-prefix", PolicyDocument=json.dumps(role_policy))

    # From now on every request must be signed by a known identity.
    moto_api(endpoint, "/moto-api/reset-auth", b"0")

    print(
        json.dumps(
            {
                "endpoint": endpoint,
                "bucket": bucket,
                "prefix": prefix,
                "external_id": args.external_id,
                "role_arn": role_arn,
                "user_access_key_id": key["AccessKeyId"],
                "user_secret_access_key": key["SecretAccessKey"],
                "region": REGION,
                "kms_key_arn": kms_key_arn,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
