"""config.toml -> frozen dataclasses (SPEC section 4); the whole schema is importable from here."""

from segd.config.model import (
    AGGREGATE_KINDS,
    CHANNEL_KINDS,
    RESERVED_NAMES,
    VALUE_KINDS,
    AggregateConfig,
    CampaignConfig,
    CapConfig,
    ChannelConfig,
    Config,
    DaemonConfig,
    GoalConfig,
    HttpConfig,
    RayConfig,
    SegmentConfig,
    ThrottleConfig,
    VariantConfig,
)
from segd.config.reader import load_config, parse_config
from segd.config.values import Address, parse_address, parse_clock_time, parse_duration, parse_size

__all__ = [
    "AGGREGATE_KINDS",
    "CHANNEL_KINDS",
    "RESERVED_NAMES",
    "VALUE_KINDS",
    "Address",
    "AggregateConfig",
    "CampaignConfig",
    "CapConfig",
    "ChannelConfig",
    "Config",
    "DaemonConfig",
    "GoalConfig",
    "HttpConfig",
    "RayConfig",
    "SegmentConfig",
    "ThrottleConfig",
    "VariantConfig",
    "load_config",
    "parse_address",
    "parse_clock_time",
    "parse_config",
    "parse_duration",
    "parse_size",
]
