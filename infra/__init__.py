"""The CDK app that deploys Confab: a stateful stack and a stateless stack, built from the route table."""
