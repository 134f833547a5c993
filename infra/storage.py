"""The files bucket: private, encrypted, TLS only, with CORS for browser uploads to presigned URLs."""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import StageConfig


def files_bucket_name(stage: str) -> str:
    """A name fixed by stage, account and region, so the stateless stack refers to the bucket without an export
    (and IAM findings name a stable ARN)."""
    return f"confab-{stage}-files-{Aws.ACCOUNT_ID}-{Aws.REGION}"


class FilesBucket(Construct):
    def __init__(self, scope: Construct, id: str, *, config: StageConfig) -> None:
        super().__init__(scope, id)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            bucket_name=files_bucket_name(config.stage),
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            versioned=False,
            cors=[
                s3.CorsRule(
                    # Uploads are presigned POST forms, downloads presigned GETs: nothing signs a PUT.
                    allowed_methods=[s3.HttpMethods.POST, s3.HttpMethods.GET, s3.HttpMethods.HEAD],
                    allowed_origins=list(config.cors_origins),
                    allowed_headers=["*"],
                    exposed_headers=["ETag"],
                    max_age=3000,
                )
            ],
            lifecycle_rules=[s3.LifecycleRule(abort_incomplete_multipart_upload_after=Duration.days(1))],
            # Uploaded files are user data: never deleted with the stack, in any stage.
            removal_policy=RemovalPolicy.RETAIN,
        )
