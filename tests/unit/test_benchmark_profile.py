"""`./tasks bench-hops --profile`: py-spy's collapsed stacks summed by where the running
code lives and by the hub's steps on the stack (benchmarks/profile.py)."""

from __future__ import annotations

import pytest

from benchmarks.profile import Frame, collapsed, render, summary

# py-spy's raw format (``--threads --nolineno``): a stack per line, root first, its count last.
RAW = "\n".join(
    [
        "thread (0x7F01);_run_once (asyncio/base_events.py);"
        "handle (gun_hub/pipeline/correlation.py);open (gun_contract/security/jose_envelope.py);"
        "verify (cryptography/hazmat/backends.py) 30",
        "thread (0x7F01);_run_once (asyncio/base_events.py);"
        "handle (gun_hub/pipeline/correlation.py) 10",
        "thread (0x7F01);_run_once (asyncio/base_events.py);"
        "send (aiokafka/producer/producer.py) 40",
        "thread (0x7F02);run (faust/transport/drivers/aiokafka.py);select (selectors.py) 20",
        "",
        "not a stack line",
    ]
)


def test_a_frame_is_read_as_its_function_and_file() -> None:
    assert Frame.parse("handle (gun_hub/pipeline/correlation.py)") == Frame(
        "handle", "gun_hub/pipeline/correlation.py"
    )
    assert Frame.parse("handle (gun_hub/pipeline/correlation.py:88)") == Frame(
        "handle", "gun_hub/pipeline/correlation.py"
    )


def test_only_stack_lines_with_a_count_are_read() -> None:
    stacks = collapsed(RAW.splitlines())
    assert [count for _, count in stacks] == [30, 10, 40, 20]
    assert stacks[0][0][-1] == Frame("verify", "cryptography/hazmat/backends.py")


def test_the_running_frame_is_counted_by_where_its_code_lives() -> None:
    figures = summary(collapsed(RAW.splitlines()))
    assert figures["samples"] == 100
    assert figures["self_by_area"] == {
        "aiokafka": 0.4,
        "cryptography (pyca)": 0.3,
        "asyncio": 0.2,
        "hub steps (gun_hub, not runtime)": 0.1,
    }


def test_a_step_counts_every_sample_it_was_on_the_stack_for() -> None:
    figures = summary(collapsed(RAW.splitlines()))
    steps = figures["inclusive_by_step"]
    assert steps["correlation (answers, decide)"] == pytest.approx(0.4)
    assert steps["envelopes (seal, open)"] == pytest.approx(0.3)
    assert steps["aiokafka producer"] == pytest.approx(0.4)
    assert steps["faust's Kafka driver"] == pytest.approx(0.2)


def test_the_printed_profile_names_each_share() -> None:
    text = render("hub", summary(collapsed(RAW.splitlines())))
    assert "hub CPU profile (100 samples" in text
    assert "40.0%  aiokafka" in text
