"""What a config still has of the example: placeholders that a live relay must not run with.

`smsc-relay check` prints each as a warning with its key path (the config is still valid: a
dry run with the example's values is what the quickstart is for).
"""

from __future__ import annotations

from relay.config.schema import Config

EXAMPLE_LOGIN = "mylogin"
EXAMPLE_PASSWORDS = frozenset({"dry-run-not-a-password", "replace-with-the-real-password"})
EXAMPLE_DOMAINS = ("example.com", "example.org", "example.net")
EXAMPLE_PHONES = frozenset({"+79990000001", "+79990000002", "+79990000003"})
EXAMPLE_SENDER = "ALERTS"


def _example_domain(address: str) -> bool:
    domain = address.rpartition("@")[2].lower()
    return any(domain == d or domain.endswith("." + d) for d in EXAMPLE_DOMAINS)


def placeholders(cfg: Config) -> list[str]:
    """`key.path: what` for every example value left in the config."""
    p = cfg.provider
    found = []
    if p.login == EXAMPLE_LOGIN:
        found.append(f"provider.login: still the example's {EXAMPLE_LOGIN!r}: your SMS Centre login")
    if p.password.value in EXAMPLE_PASSWORDS:
        found.append("provider.password: still the example's placeholder: the account's password or API key")
    if _example_domain(p.reply_address):
        found.append(
            f"provider.reply_address: {p.reply_address} is an example domain: the provider's replies"
            " would go nowhere (an address of yours that reaches this relay)"
        )
    for i, route in enumerate(cfg.routes):
        example = sorted(EXAMPLE_PHONES.intersection(route.phones))
        if example:
            found.append(f"routes[{i}].phones: the example's phones {', '.join(example)} ({route.name})")
        if route.options.sender == EXAMPLE_SENDER:
            found.append(
                f"routes[{i}].sender: {EXAMPLE_SENDER!r} must be a sender name registered with your account"
                f" ({route.name}); the provider refuses others (ERROR 6)"
            )
    for name, values in cfg.aliases.items():
        example = sorted(EXAMPLE_PHONES.intersection(values))
        if example:
            found.append(f"aliases.{name}: the example's phones {', '.join(example)}")
    return found
