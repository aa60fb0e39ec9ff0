"""LiteLLM proxy vs ours, side by side (see run.py)."""
