"""A WAF web ACL in front of the API stage (on in prod, off in dev for cost: -c waf=true|false).

What it blocks, and why only this:
- any one client address over `waf_rate_limit` requests in five minutes (anonymous chats and logins are
  reachable without credentials; stage throttling is shared by every caller, this is per address);
- addresses on Amazon's IP reputation list (bots, scanners, known sources of attacks);
- AWS's known-bad-inputs rules on the URI, headers and query (exploit probes).

Rules that inspect the request body are not used or only counted: a chat message is arbitrary user text
(code, markup, quoted exploits), so body rules would refuse legitimate messages. The handlers validate every
body themselves (pydantic, size limits, problem+json).

An address over the rate gets a 429 whose body is the problem document the handlers would write (WAF sends it
as application/json: it will not set any other Content-Type, nor a Retry-After header).
"""

from __future__ import annotations

import json

from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from infra.config import StageConfig
from shared.errors import RateLimitedError, problem_body, spec_for

RATE_RULE = "PerAddressRate"
REPUTATION_RULE = "AWSManagedRulesAmazonIpReputationList"
BAD_INPUTS_RULE = "AWSManagedRulesKnownBadInputsRuleSet"
RULE_NAMES = (RATE_RULE, REPUTATION_RULE, BAD_INPUTS_RULE)

# Rules of the known-bad-inputs group that look at the body: counted, never blocking (see above).
BODY_RULES = ("Log4JRCE_BODY", "JavaDeserializationRCE_BODY")


def _visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True
    )


def _managed(name: str, priority: int, *, counted: tuple[str, ...] = ()) -> wafv2.CfnWebACL.RuleProperty:
    return wafv2.CfnWebACL.RuleProperty(
        name=name,
        priority=priority,
        override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
        statement=wafv2.CfnWebACL.StatementProperty(
            managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                vendor_name="AWS",
                name=name,
                rule_action_overrides=[
                    wafv2.CfnWebACL.RuleActionOverrideProperty(
                        name=rule, action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={})
                    )
                    for rule in counted
                ]
                or None,
            )
        ),
        visibility_config=_visibility(name),
    )


class ApiFirewall(Construct):
    def __init__(self, scope: Construct, id: str, *, config: StageConfig, stage_arn: str) -> None:
        super().__init__(scope, id)
        spec = spec_for(RateLimitedError)
        too_many = problem_body(
            spec.status, spec.slug, spec.title, "Too many requests from this address; retry in a few minutes."
        )
        per_address = wafv2.CfnWebACL.RuleProperty(
            name=RATE_RULE,
            priority=0,
            action=wafv2.CfnWebACL.RuleActionProperty(
                block=wafv2.CfnWebACL.BlockActionProperty(
                    custom_response=wafv2.CfnWebACL.CustomResponseProperty(
                        response_code=spec.status, custom_response_body_key="rate-limited"
                    )
                )
            ),
            statement=wafv2.CfnWebACL.StatementProperty(
                rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                    limit=config.waf_rate_limit, aggregate_key_type="IP", evaluation_window_sec=300
                )
            ),
            visibility_config=_visibility(RATE_RULE),
        )
        self.web_acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            name=f"confab-{config.stage}-api",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            custom_response_bodies={
                "rate-limited": wafv2.CfnWebACL.CustomResponseBodyProperty(
                    content_type="APPLICATION_JSON", content=json.dumps(too_many)
                )
            },
            visibility_config=_visibility(f"confab-{config.stage}-api"),
            rules=[
                per_address,
                _managed(REPUTATION_RULE, 1),
                _managed(BAD_INPUTS_RULE, 2, counted=BODY_RULES),
            ],
        )
        self.association = wafv2.CfnWebACLAssociation(
            self, "Association", resource_arn=stage_arn, web_acl_arn=self.web_acl.attr_arn
        )
