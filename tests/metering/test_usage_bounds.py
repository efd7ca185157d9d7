"""Issue 23 item 20: reported tokens are bounded by what the request could produce."""

from dataclasses import replace

from gateway.config.model import Config
from gateway.metering.settle import MAX_REPORTED_TOKENS, token_bounds, trusted
from gateway.metering.types import Admission

from .helpers import NOON, ok, request


def admission(config: Config, clamp: int | None = None, **changes: object) -> Admission:
    return Admission(
        headers={},
        clamp_max_tokens=clamp,
        request=replace(request(config), **changes),  # type: ignore[arg-type]
        started=NOON,
    )


def test_completion_is_bounded_by_n_times_the_max_tokens_sent(config: Config) -> None:
    chat = {"generates_tokens": True, "prompt_tokens_most": 1_000}
    assert token_bounds(admission(config, **chat, max_output_tokens=50)) == (1_000, 50)
    assert token_bounds(admission(config, 20, **chat, max_output_tokens=50)) == (1_000, 20)
    assert token_bounds(admission(config, **chat, max_output_tokens=50, choices=3)) == (1_000, 150)
    # no max_tokens sent, or not a token-generating request: only the absolute bound
    unbounded = (1_000, MAX_REPORTED_TOKENS)
    assert token_bounds(admission(config, **chat)) == unbounded
    assert token_bounds(admission(config, prompt_tokens_most=1_000, max_output_tokens=50)) == (
        unbounded
    )
    assert token_bounds(admission(config)) == (MAX_REPORTED_TOKENS, MAX_REPORTED_TOKENS)


def test_trusted_clamps_to_the_bounds_and_flags(config: Config) -> None:
    outcome, flagged = trusted(ok(10_000_000, 10_000_000), (1_000, 50))
    assert (outcome.prompt_tokens, outcome.completion_tokens, flagged) == (1_000, 50, True)
    outcome, flagged = trusted(ok(1_000, 50), (1_000, 50))
    assert (outcome.prompt_tokens, outcome.completion_tokens, flagged) == (1_000, 50, False)
