"""The OpenAI-compatible API (`/v1/videos`, `/v1/images/*`, `/v1/models`) for code written
against the official `openai` package. Authenticated with our `gk_` API keys as bearer tokens;
errors in OpenAI's shape; everything runs through the same task engine as `/api/v1`."""

from app.api.openai.router import openai_router

__all__ = ["openai_router"]
