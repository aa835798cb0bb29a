"""Settings of the webhooks: where they may go (both processes) and how they are delivered."""

from __future__ import annotations

from pydantic import Field, field_validator

from vidjobs.settings import Settings, setting

__all__ = ["DispatchSettings", "TargetPolicy"]


class TargetPolicy(Settings):
    """Which URLs a webhook may be sent to (the SSRF guard); the API and the dispatcher agree."""

    allow_http: bool = setting(
        False,
        env="VIDJOBS_WEBHOOK_ALLOW_HTTP",
        flag="--webhook-allow-http/--webhook-https-only",
        help="Accept http:// callback and endpoint URLs, not only https:// (``vidjobs dev`` "
        "allows them: its receivers are on loopback).",
    )
    allow_networks: str = setting(
        "",
        env="VIDJOBS_WEBHOOK_ALLOW_NETWORKS",
        flag="--webhook-allow-networks",
        help="Comma-separated networks (CIDR) a webhook may reach although they are not public: "
        "e.g. ``10.20.0.0/16`` for receivers inside the deployment. Every other loopback, "
        "private, link-local (cloud metadata), shared, multicast or reserved address is "
        "refused, at submit and again at each delivery (``vidjobs dev`` allows loopback).",
    )

    @field_validator("allow_networks")
    @classmethod
    def _networks_parse(cls, value: str) -> str:
        from vidjobs.webhooks.targets import parse_networks

        parse_networks(value)
        return value


class DispatchSettings(Settings):
    """How a dispatcher delivers the outbox (in each worker, or ``vidjobs webhooks dispatch``)."""

    targets: TargetPolicy = Field(
        default_factory=TargetPolicy,
        description="Where webhooks may go (``VIDJOBS_WEBHOOK_ALLOW_*``).",
    )
    secret_keys: str = setting(
        "",
        env="VIDJOBS_WEBHOOK_SECRET_KEYS",
        repr=False,
        help="Comma-separated Fernet keys (``vidjobs webhooks keygen``) that seal the tenants' "
        "signing secrets in the database: the first seals new secrets, every one opens. The "
        "dispatcher and ``vidjobs webhooks secret`` need them; without them no webhook is sent.",
    )
    secret_grace_s: float = setting(
        86400.0,
        env="VIDJOBS_WEBHOOK_SECRET_GRACE",
        flag="--secret-grace",
        gt=0,
        help="After ``vidjobs webhooks secret --rotate``, seconds the old secret still signs "
        "(every delivery carries both signatures meanwhile).",
    )
    connect_timeout_s: float = setting(
        3.0,
        env="VIDJOBS_WEBHOOK_CONNECT_TIMEOUT",
        flag="--connect-timeout",
        gt=0,
        help="Seconds to resolve and connect to a receiver.",
    )
    timeout_s: float = setting(
        10.0,
        env="VIDJOBS_WEBHOOK_TIMEOUT",
        flag="--timeout",
        gt=0,
        help="Seconds a receiver may take for each step of a delivery (each write of the "
        "request, each read of its answer).",
    )
    retry_base_s: float = setting(
        5.0,
        env="VIDJOBS_WEBHOOK_RETRY_BASE",
        flag="--retry-base",
        gt=0,
        help="Wait after the first failed attempt; each later wait doubles (with jitter: half "
        "to all of it), up to --retry-max-delay.",
    )
    retry_max_delay_s: float = setting(
        3600.0,
        env="VIDJOBS_WEBHOOK_RETRY_MAX_DELAY",
        flag="--retry-max-delay",
        gt=0,
        help="Longest wait between two attempts of one delivery.",
    )
    retry_for_s: float = setting(
        86400.0,
        env="VIDJOBS_WEBHOOK_RETRY_FOR",
        flag="--retry-for",
        gt=0,
        help="Seconds after the event during which a delivery is retried; the last attempt is "
        "made at the end of it, then the delivery is marked failed.",
    )
    poll_interval_s: float = setting(
        1.0,
        env="VIDJOBS_WEBHOOK_POLL_INTERVAL",
        flag="--poll-interval",
        gt=0,
        help="Seconds between two looks for due deliveries when nothing woke the dispatcher (a "
        "worker wakes its own dispatcher when it finishes jobs; retries and cancels are found "
        "by this poll).",
    )
    concurrency: int = setting(
        16,
        env="VIDJOBS_WEBHOOK_CONCURRENCY",
        ge=1,
        help="Deliveries one dispatcher has in flight at once.",
    )
    tenant_concurrency: int = setting(
        8,
        env="VIDJOBS_WEBHOOK_TENANT_CONCURRENCY",
        ge=1,
        help="Deliveries of one tenant a dispatcher has in flight at once: a tenant whose "
        "receivers are slow or hang holds at most this many of the --concurrency slots, and "
        "every other tenant's events keep going.",
    )
    batch_size: int = setting(
        50,
        env="VIDJOBS_WEBHOOK_BATCH_SIZE",
        ge=1,
        help="Most deliveries one claim takes.",
    )
    dispatcher_id: str = setting(
        "",
        env="VIDJOBS_WEBHOOK_DISPATCHER_ID",
        shown_default="the worker id, or hostname-pid",
        help="Name recorded on every attempt this dispatcher makes.",
    )

    @field_validator("secret_keys")
    @classmethod
    def _keys_parse(cls, value: str) -> str:
        from vidjobs.webhooks.secrets import parse_keys

        parse_keys(value)
        return value

    @property
    def attempt_limit_s(self) -> float:
        """The longest one attempt may take, whole (a receiver that answers a byte at a time
        never trips the per-read timeout): connect, then twice the step timeout."""
        return self.connect_timeout_s + 2 * self.timeout_s

    @property
    def lease_s(self) -> float:
        """How long a claimed delivery is held: the longest an attempt can take, and 5 s to
        record it. An attempt is cut at :attr:`attempt_limit_s`, so it never outlives it."""
        return self.attempt_limit_s + 5.0
