"""The CDK app: `python -m infra.app [-c stage=prod] [-c nat=true] ...` or `npx cdk synth` (cdk.json)."""

from __future__ import annotations

import sys

from infra.synth import build_app


def main(argv: list[str]) -> None:
    build_app(argv).synth()


if __name__ == "__main__":
    main(sys.argv[1:])
