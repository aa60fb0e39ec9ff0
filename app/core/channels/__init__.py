"""Upstream channels: several upstreams configured at runtime, with failover and health.

- `types`: the channel types and the adapter each uses per kind of model.
- `view`: the snapshot routing works on, and the virtual default channel.
- `policy`: routing order, when a create moves on, cooldown lengths.
- `health`: failures, cooldowns and probes in the database.
- `service`: administration (CRUD) and the create-time "is this model served" check.

The router that picks a channel for each task is `app.core.tasks.upstream.UpstreamRouter`.
"""

from app.core.channels.policy import ChannelPolicy
from app.core.channels.types import CHANNEL_TYPES, ChannelType
from app.core.channels.view import DEFAULT_CHANNEL_ID, ChannelView, Health

__all__ = [
    "CHANNEL_TYPES",
    "DEFAULT_CHANNEL_ID",
    "ChannelPolicy",
    "ChannelType",
    "ChannelView",
    "Health",
]
