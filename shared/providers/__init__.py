"""Model providers: one interface, four clients (Bedrock, SageMaker, OpenAI-compatible HTTP, local)."""
